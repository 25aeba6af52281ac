import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

# test doubles (clearly named modules under tests/) are importable as plugins with -p MODULE
sys.path.insert(0, str(Path(__file__).parent / "support"))
