"""The leaderboard package is a one-way pipeline, and importing it stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ttsadapt.leaderboard

PACKAGE = Path(ttsadapt.leaderboard.__file__).parent

# each module may import only modules before it (the stages run in this order)
ORDER = [
    "text",
    "jsonio",
    "scores",
    "load",
    "systems",
    "pairing",
    "summary",
    "tables",
    "media",
    "listening",
    "figures",
    "page_assets",
    "page",
    "renderers",
    "build",
    "__init__",
]


def _package_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_every_module_imports_only_earlier_stages():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert sorted(ORDER) == modules  # a new module gets a place in the order
    late = {
        name: sorted(
            dep for dep in _package_imports(PACKAGE / f"{name}.py") if dep not in ORDER[:i]
        )
        for i, name in enumerate(ORDER)
    }
    assert {name: deps for name, deps in late.items() if deps} == {}


def test_importing_the_leaderboard_does_not_import_matplotlib():
    code = "import sys, ttsadapt.leaderboard; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
