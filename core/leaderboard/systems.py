"""Stage *systems*: runs grouped into systems, one row each, with a label a reader can scan.

A system is backbone x method x method params x data recipe (x ``[synthesis]`` settings, x the run
it started from for a run chained ``after`` another), seeds pooled; the anchor (zero-shot) system
is the one whose records say ``is_anchor``. The label shows only the method parameters that vary
between systems of the same method (a sweep's axis), and where a chained system started
(``kokoro / grpo after lora(rank=4) / spk-a``); ``optimised`` lists the metrics its training
optimised (:func:`~.load.optimised_metrics`).
Checkpoint selection (``val_loss`` or ``dev_metric``) decides which validation loss is shown.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .load import LoadedResults
from .text import canon, params_text, recipe_text

__all__ = ["SELECT_CHOICES", "selected_step", "selected_val_loss", "systems_frame"]

SELECT_CHOICES = ("val_loss", "dev_metric", "dev_score")  # dev_score: alias of dev_metric
_SELECT_FIELD = {"val_loss": "val_loss", "dev_metric": "dev_score", "dev_score": "dev_score"}


def _varying_params(method_params: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """Per method, the parameter names whose values differ between its systems: the labels show
    only those (a sweep's axis), the CSV keeps every parameter."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method, params in method_params:
        by_method.setdefault(method, []).append(params if isinstance(params, dict) else {})
    out = {}
    for method, dicts in by_method.items():
        keys = sorted({k for d in dicts for k in d})
        out[method] = [k for k in keys if len({canon(d.get(k)) for d in dicts}) > 1]
    return out


def _median(nums: np.ndarray) -> float:
    """Median of the non-NaN entries of a float array, NaN when there are none."""
    nums = nums[~np.isnan(nums)]
    return float(np.median(nums)) if nums.size else math.nan


def systems_frame(records: pd.DataFrame, loaded: LoadedResults, select: str) -> pd.DataFrame:
    """One row per system of ``records``: label, seeds, runs, sizes, the selected val loss."""
    runs = records.drop_duplicates("run_id")
    sel_loss = {rid: selected_val_loss(ck, select) for rid, ck in loaded.checkpoints.items()}
    col = {
        name: runs[name].to_numpy()
        for name in ("run_id", "backbone", "method", "method_params", "data_recipe", "is_anchor")
    }
    for name in ("synthesis", "after"):
        col[name] = runs[name].to_numpy() if name in runs else np.full(len(runs), "", object)
    optimised = runs["optimised"].tolist() if "optimised" in runs else [()] * len(runs)
    for name in ("trainable_params", "total_params", "adapter_bytes"):
        col[name] = pd.to_numeric(runs[name], errors="coerce").to_numpy(float, na_value=np.nan)
    seeds_all = runs["seed"].to_numpy()
    seed_missing = pd.isna(runs["seed"]).to_numpy()
    rows = []
    groups = runs.groupby("system", sort=False).indices
    varying = _varying_params(
        [(col["method"][w[0]], col["method_params"][w[0]]) for w in groups.values()]
    )
    for system, where in groups.items():
        first = where[0]
        params = params_text(col["method_params"][first])
        method_params = col["method_params"][first]
        shown = varying.get(col["method"][first], [])
        short = params_text(
            {k: method_params[k] for k in shown if k in method_params}
            if isinstance(method_params, dict)
            else method_params
        )
        recipe = recipe_text(col["data_recipe"][first])
        label = f"{col['backbone'][first]} / {col['method'][first]}"
        label += f" ({short})" if short else ""
        label += f" after {col['after'][first]}" if col["after"][first] else ""
        label += f" / {recipe}" if recipe else ""
        synthesis = col["synthesis"][first] or ""
        label += f" / {synthesis}" if synthesis else ""
        trainable = _median(col["trainable_params"][where])
        total = _median(col["total_params"][where])
        run_ids = list(col["run_id"][where])
        losses = [v for r in run_ids if (v := sel_loss.get(r)) is not None and math.isfinite(v)]
        seeds = dict.fromkeys(seeds_all[where[~seed_missing[where]]].tolist())
        rows.append(
            {
                "system": system,
                "label": label,
                "backbone": col["backbone"][first],
                "method": col["method"][first],
                "method_params": params,
                "data_recipe": recipe,
                "is_anchor": bool(col["is_anchor"][first]),
                "synthesis": synthesis,
                "optimised": tuple(optimised[first]),
                "seeds": ", ".join(str(s) for s in sorted(seeds)),
                "n_seeds": len(seeds),
                "n_runs": len(where),
                "run_ids": run_ids,
                "trainable_params": trainable,
                "total_params": total,
                "trainable_share_pct": 100.0 * trainable / total
                if total and not math.isnan(total)
                else math.nan,
                "adapter_mb": _median(col["adapter_bytes"][where]) / 1e6,
                "selected_val_loss": float(np.mean(losses)) if losses else math.nan,
            }
        )
    frame = pd.DataFrame(rows)
    dup = frame["label"].duplicated(keep=False)
    if dup.any():  # same name, different versions or backbone params: keep rows apart
        frame.loc[dup, "label"] = [
            f"{lab} #{i + 1}" for i, lab in enumerate(frame.loc[dup, "label"])
        ]
    return frame


def selected_val_loss(ck: dict[str, Any], select: str) -> float | None:
    """The validation loss of the checkpoint ``select`` picks in one run's index, if known."""
    step = selected_step(ck, select)
    for c in ck["checkpoints"]:
        if c["step"] == step and c.get("val_loss") is not None:
            return float(c["val_loss"])
    return None


def selected_step(ck: dict[str, Any], select: str) -> int | None:
    """The checkpoint step a rule picks: the runner's ``selected`` entry, else recomputed."""
    rule = "dev_metric" if select == "dev_score" else select
    chosen = ck["selected"].get(f"by_{rule}")
    if chosen is None and select == "dev_score":
        chosen = ck["selected"].get("by_dev_score")
    if chosen is not None:
        return chosen
    fld = _SELECT_FIELD[select]
    cands = [c for c in ck["checkpoints"] if c.get(fld) is not None]
    if not cands:
        return None
    pick = min if fld == "val_loss" else max
    return pick(cands, key=lambda c: c[fld])["step"]
