"""Shared helpers for the core tests: a tiny real corpus on disk and suite files using test doubles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"
DOUBLES = "ttsadapt_test_doubles"


def make_corpus(root: Path, speakers=("a", "b"), n_train=4, n_eval=3) -> Path:
    """Write short tone clips and a manifest with train/validation/eval splits; return the manifest."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    lines = []
    sr = 16000
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    for s_i, spk in enumerate(speakers):
        for split, n in (("train", n_train), ("validation", 2), ("eval", n_eval)):
            for i in range(n):
                cid = f"{spk}-{split}-{i}"
                t = np.arange(int(sr * (0.8 + 0.1 * i))) / sr
                x = (
                    0.3
                    * np.sin(2 * np.pi * (120 + 30 * s_i) * t)
                    * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t))
                )
                sf.write(wavs / f"{cid}.wav", x.astype(np.float32), sr)
                text = " ".join(words[(i + k) % len(words)] for k in range(3))
                lines.append(
                    {
                        "id": cid,
                        "audio": f"wavs/{cid}.wav",
                        "text": text,
                        "speaker": spk,
                        "language": "en",
                        "split": split,
                    }
                )
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def suite_text(
    manifest: Path,
    name: str = "t",
    methods: str | None = None,
    backbone_params: str = "",
    extra: str = "",
) -> str:
    methods = methods or (
        '[[methods]]\nname = "double_anchor"\n\n'
        '[[methods]]\nname = "double_nudge"\nparams = { target_gain = [0.5, 0.9] }\n'
    )
    return f"""name = "{name}"
version = "1"
anchor = "double_anchor"
seeds = [0]
{extra}
[corpus]
manifest = "{manifest}"

[[data]]
name = "spk-a"
speakers = ["a"]

[evaluation]
split = "eval"
max_items = 4

[[backbones]]
name = "double_tone"
{backbone_params}

{methods}
[[metrics]]
name = "double_rms"
"""


def write_suite(tmp: Path, manifest: Path, **kw) -> Path:
    path = tmp / f"{kw.get('name', 't')}.toml"
    path.write_text(suite_text(manifest, **kw))
    return path


def cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run the real `ttsadapt` CLI in a subprocess with the test doubles loadable via -p."""
    full_env = {**os.environ, "PYTHONPATH": str(SUPPORT), "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ttsadapt", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
