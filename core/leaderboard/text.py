"""How records' identity fields read as text: canonical JSON, parameter lists, recipe names."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["canon", "params_text", "recipe_text"]


def canon(obj: Any) -> str:
    """Canonical JSON text of ``obj`` (sorted keys): equal values give equal text."""
    return json.dumps(obj, sort_keys=True, default=str)


def params_text(params: Any) -> str:
    """``a=1, b=2`` (sorted by name), empty for no parameters."""
    if not params:
        return ""
    if isinstance(params, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return str(params)


def recipe_text(recipe: Any) -> str:
    """A data recipe's name (a recipe given as a table: its ``name``, else its canonical JSON)."""
    if recipe is None or (isinstance(recipe, float) and math.isnan(recipe)):
        return ""
    if isinstance(recipe, str):
        return recipe
    if isinstance(recipe, dict) and "name" in recipe:
        return str(recipe["name"])
    return canon(recipe)
