"""Import the ``kokoro`` package's model classes without its text front end.

``kokoro`` (0.9.x, Apache-2.0) is installed with ``pip install --no-deps kokoro``: its declared
dependency ``misaki[en]`` (a G2P engine that pulls spaCy and its English model from a hub) is not
needed here, because ttsadapt phonemises with espeak-ng itself. The package's ``__init__`` imports
``kokoro.pipeline``, which imports misaki; the model classes (``kokoro.model``, ``kokoro.modules``,
``kokoro.istftnet``) do not. So the package is registered in ``sys.modules`` as an empty package
object pointing at the installed folder, without running its ``__init__``, and ``kokoro.model`` is
imported from it. Nothing installed is edited; if the real package was imported first, it is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

from ttsadapt.errors import PluginError


def kmodel_class() -> Any:
    """``kokoro.model.KModel``; a :class:`PluginError` saying how to install it when missing."""
    if "kokoro.model" in sys.modules:
        return sys.modules["kokoro.model"].KModel
    spec = importlib.util.find_spec("kokoro")
    if spec is None or not spec.submodule_search_locations:
        raise PluginError(
            "backbone kokoro needs the `kokoro` package (its PyTorch model classes): "
            "pip install --no-deps kokoro==0.9.4 loguru (./run.sh installs it)"
        )
    if "kokoro" not in sys.modules:
        package = types.ModuleType("kokoro")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["kokoro"] = package
    try:
        from loguru import logger

        logger.disable("kokoro")  # as the package's own __init__ does: no debug dumps
        return importlib.import_module("kokoro.model").KModel
    except ImportError as exc:
        raise PluginError(f"backbone kokoro: cannot import kokoro.model: {exc}") from None
