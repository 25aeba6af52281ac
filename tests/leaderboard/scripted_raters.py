"""TEST FIXTURE: raters who rate with known noise, for listening-test tests.

A rater "hears" a stimulus through the test's key (the tests play the part of the ears): its true
quality is the system's quality (``QUALITY``) plus a per-sentence effect, the real recording is
``UPPER`` and the degraded anchor ``LOW``; the rater adds their own bias and Gaussian noise of
``sd`` and rounds to the scale. A ``careless`` rater rates the low anchor high and the real
recording low (screening must exclude them). :func:`ratings_file` writes what the page saves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

UPPER = 4.7
LOW = 1.3


@dataclass
class Rater:
    code: str
    sd: float = 0.5
    bias: float = 0.0
    careless: bool = False
    seed: int = 0


def true_quality(key: dict[str, Any], quality: dict[str, float]) -> dict[str, float]:
    """Token -> true quality on the 1–5 scale (systems by ``quality[label]``, sentences vary)."""
    rng = np.random.default_rng(123)
    item_effect = {item: float(rng.normal(0, 0.3)) for item in key["items"]}
    out = {}
    for token, meta in key["stimuli"].items():
        role = meta["role"]
        if role == "system":
            out[token] = quality[meta["system"]] + item_effect[meta["item"]]
        elif role in ("upper", "reference"):
            out[token] = UPPER
        elif role == "low":
            out[token] = LOW
        else:  # attention check: a system clip
            out[token] = 3.0
    return out


def rate(rater: Rater, truth: float, kind: str, rng: np.random.Generator, role: str) -> float:
    q = truth
    if rater.careless and role in ("low", "upper"):
        q = 6.0 - truth  # hears the anchors the wrong way round
    value = q + rater.bias + rng.normal(0, rater.sd)
    if kind == "mushra":
        return float(np.clip(round((value - 1) * 25), 0, 100))
    return float(np.clip(round(value), 1, 5))


def answer_trial(
    rater: Rater, trial: dict[str, Any], key: dict[str, Any], truth: dict[str, float], rng
) -> dict[str, Any]:
    """One answer as the page records it, for a trial as the page's config lists it."""
    kind = key["kind"]
    tokens = trial["s"]
    ans: dict[str, Any] = {"trial": trial["id"], "order": tokens, "played": list(tokens)}
    ans["time"] = datetime.now(UTC).isoformat()
    check = trial.get("check")
    if kind == "ab":
        if check:
            ans["choice"] = check["answer"]
        else:
            a, b = (truth[t] + rng.normal(0, rater.sd) for t in tokens)
            roles = [key["stimuli"][t]["role"] for t in tokens]
            if rater.careless and "low" in roles:
                a, b = -a, -b
            ans["choice"] = "none" if abs(a - b) < 0.2 else ("A" if a > b else "B")
        return ans
    if check:
        ans["ratings"] = {tokens[0]: float(check["answer"])}
    else:
        ans["ratings"] = {
            t: rate(rater, truth[t], kind, rng, key["stimuli"][t]["role"]) for t in tokens
        }
    return ans


def page_config(out_dir: Path) -> dict[str, Any]:
    """The config the exported page embeds (what each rater sees, in their order)."""
    html = (Path(out_dir) / "index.html").read_text(encoding="utf-8")
    start = html.index("var C = ") + len("var C = ")
    end = html.index(";\n(function(){", start)
    return json.loads(html[start:end].replace("<\\/", "</"))


def ratings_file(
    path: Path, rater: Rater, config: dict[str, Any], key: dict[str, Any], truth: dict[str, float]
) -> Path:
    """Write the file the page's 'Download ratings' saves, as a rater would fill it."""
    rng = np.random.default_rng(rater.seed)
    trials = config["raters"][rater.code]
    answers = [answer_trial(rater, t, key, truth, rng) for t in trials]
    now = datetime.now(UTC).isoformat()
    data = {
        "format": config["format"],
        "test_id": config["test_id"],
        "suite": config["suite"],
        "kind": config["kind"],
        "rater": rater.code,
        "started": now,
        "updated": now,
        "saved": now,
        "finished": True,
        "user_agent": "scripted",
        "answers": answers,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
