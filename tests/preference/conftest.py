"""Fixtures of the preference tests: a registry holding the test-double metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

DOUBLES = "ttsadapt_test_doubles_preference"


@pytest.fixture(scope="session")
def registry():
    from ttsadapt.registry import build_registry

    return build_registry(extra_modules=[DOUBLES], autoload=False)
