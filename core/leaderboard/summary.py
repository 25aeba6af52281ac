"""Stage *statistics*: the pooled table every renderer draws from.

:func:`summarise` turns the loaded records into a :class:`Summary`: per system x metric output the
mean over items and seeds with a cluster-bootstrap interval, the paired delta to the anchor with
its interval, the Wilcoxon p-value (raw and Holm-adjusted over the whole leaderboard), stars and
the rank; per system its mean rank; per run its own numbers and checkpoints; per human metric its
listening tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..components import has_direction
from ..errors import ConfigError
from ..latency import LATENCY
from ..stats import DEFAULT_RESAMPLES, Bootstrapper, holm_adjust, paired_wilcoxon_many, stars
from .load import LoadedResults
from .pairing import Pairing, Pooled
from .scores import number
from .systems import SELECT_CHOICES, selected_step, systems_frame

__all__ = ["Summary", "human_metrics", "summarise"]


@dataclass
class Summary:
    """The statistics the three outputs are drawn from."""

    suite: str
    systems: pd.DataFrame  # one row per system
    table: pd.DataFrame  # one row per system x metric x output (pooled statistics)
    per_seed: pd.DataFrame  # one row per system x seed x metric x output (from the records)
    checkpoints: (
        pd.DataFrame
    )  # one row per run x checkpoint: system, seed, step, val_loss, dev_score
    select: str
    confidence: float
    notes: list[str] = field(default_factory=list)
    n_comparisons: int = 0  # p-values in the metrics' Holm family (system x output vs anchor)
    n_timing_comparisons: int = 0  # p-values in the latency record's own Holm family
    # metric -> what its records say about the listening test(s) it came from (human metrics only)
    human: dict[str, dict[str, Any]] = field(default_factory=dict)


def summarise(
    loaded: LoadedResults,
    select: str = "val_loss",
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Summary:
    """Pooled means, bootstrap intervals, deltas to the anchor, Wilcoxon p-values and ranks.

    Intervals resample utterances (item ids) with all their seeds' values (cluster bootstrap);
    the Wilcoxon test runs on one paired difference per utterance (its mean over seeds); p-values
    are Holm-adjusted over every metric comparison in the table (all outputs of all metrics of all
    systems against their anchor; comparisons without a test, NaN, are not counted; the latency
    record's comparisons, timings that differ between runs, are a family of their own) and stars
    come from the adjusted values. With one seed per system these are the ordinary item-level bootstrap
    and test.
    """
    if select not in SELECT_CHOICES:
        raise ConfigError(f"select: expected one of {', '.join(SELECT_CHOICES)}, got {select!r}")
    records = loaded.records
    notes: list[str] = []
    systems = systems_frame(records, loaded, select)
    runs = records.drop_duplicates("run_id")
    anchor_of = _anchor_of(systems, notes)
    keys, stats = _pool(loaded, systems, runs, anchor_of)
    table, clusters = _pooled_rows(records, keys, stats)
    n_comparisons, n_timing = _add_intervals_and_tests(
        table, clusters, confidence, n_resamples, seed
    )
    table, systems = _rank(table, systems)
    optimised = dict(zip(systems["system"], systems["optimised"]))
    table["optimised"] = [  # the system's training optimised this metric (judges are not rewards)
        metric in optimised.get(system, ())
        for system, metric in zip(table["system"], table["metric"])
    ]
    human = human_metrics(loaded)
    _two_way_intervals(table, records, set(human))
    for metric, info in human.items():
        if len(info["tests"]) > 1:
            notes.append(
                f"{metric}: records come from {len(info['tests'])} listening tests "
                f"({', '.join(info['tests'])}); systems rated in different tests had different "
                "raters, so compare their numbers with care"
            )
    return Summary(
        suite=loaded.suite,
        systems=systems,
        table=table,
        per_seed=_per_seed(records),
        checkpoints=_checkpoint_frame(loaded, runs, select),
        select=select,
        confidence=confidence,
        notes=notes,
        n_comparisons=n_comparisons,
        n_timing_comparisons=n_timing,
        human=human,
    )


def _anchor_of(systems: pd.DataFrame, notes: list[str]) -> dict[str, str | None]:
    """Each system's anchor: the anchor system of its backbone decoded the same way.

    With a ``[synthesis]`` sweep each setting has its own anchor; a system whose setting has none
    is compared with its backbone's first anchor. A backbone without an anchor, or with several
    for one setting, gets a note.
    """
    anchors: dict[Any, str] = {}
    setting_anchors: dict[tuple[Any, str], str] = {}
    for row in systems[systems["is_anchor"]].itertuples():
        setting_anchors.setdefault((row.backbone, row.synthesis), row.system)
        if row.backbone in anchors:
            if row.synthesis:
                continue
            notes.append(
                f"backbone {row.backbone} has several anchor systems; deltas use {anchors[row.backbone]}"
            )
            continue
        anchors[row.backbone] = row.system
    for bb in sorted(set(systems["backbone"]) - set(anchors), key=str):
        notes.append(f"backbone {bb} has no zero-shot anchor run: no deltas for its systems")
    return {
        row.system: setting_anchors.get((row.backbone, row.synthesis), anchors.get(row.backbone))
        for row in systems.itertuples()
    }


def _pool(
    loaded: LoadedResults,
    systems: pd.DataFrame,
    runs: pd.DataFrame,
    anchor_of: dict[str, str | None],
) -> tuple[list[Any], list[Pooled]]:
    """One key row per system x metric x output, and its pooled values and paired differences."""
    runs_of: dict[str, list[tuple[str, Any]]] = {}
    for rid, system, run_seed in zip(
        runs["run_id"].tolist(), runs["system"].tolist(), runs["seed"].tolist()
    ):
        runs_of.setdefault(system, []).append((rid, run_seed))
    keys = loaded.records.drop_duplicates(["system", "metric", "output"])[
        [
            "system",
            "metric",
            "output",
            "output_index",
            "is_headline",
            "higher_is_better",
            "unit",
            "metric_version",
            "in_mean_rank",
        ]
    ]
    pairing = Pairing(loaded)
    key_rows = list(keys.itertuples(index=False))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, k in enumerate(key_rows):
        groups.setdefault((k.system, k.metric), []).append(i)
    stats: list[Pooled | None] = [None] * len(key_rows)
    for (system, metric), where in groups.items():  # all outputs of a metric at once
        anchor = anchor_of[system]
        anchor_runs = runs_of[anchor] if anchor and anchor != system else []
        outputs = [key_rows[i].output for i in where]
        for i, st in zip(
            where, pairing.pooled(runs_of[system], anchor, anchor_runs, metric, outputs)
        ):
            stats[i] = st
    return key_rows, stats  # type: ignore[return-value]  # every key row is in one group


@dataclass
class _Clusters:
    """Per table row: the item clusters of the values and of the paired differences."""

    values: list[tuple[np.ndarray, np.ndarray]]
    diffs: list[tuple[np.ndarray, np.ndarray]]
    item_diffs: list[np.ndarray]


def _pooled_rows(
    records: pd.DataFrame, key_rows: list[Any], stats: list[Pooled]
) -> tuple[pd.DataFrame, _Clusters]:
    """The table's means, counts and deltas; the clusters the intervals and tests resample."""
    rows = []
    clusters = _Clusters([], [], [])
    for k, st in zip(key_rows, stats):
        sums, sizes = st.sums, st.sizes
        if not sizes.size:  # no per-utterance rows: fall back on the records' own numbers
            recs = records[
                (records["system"] == k.system)
                & (records["metric"] == k.metric)
                & (records["output"] == k.output)
            ]
            sums = pd.to_numeric(recs["record_mean"], errors="coerce").dropna().to_numpy()
            sizes = np.ones(sums.size)
        clusters.values.append((sums, sizes))
        clusters.diffs.append((st.diff_sums, st.diff_sizes))
        clusters.item_diffs.append(st.diff_sums / st.diff_sizes)
        n_pairs = float(st.diff_sizes.sum())
        rows.append(
            {
                **k._asdict(),
                "mean": float(sums.sum() / sizes.sum()) if sizes.size else math.nan,
                "n": int(sizes.sum()),
                "n_not_applicable": st.n_not_applicable,
                "n_item_errors": st.n_failed,
                "delta": float(st.diff_sums.sum() / n_pairs) if n_pairs else math.nan,
                "n_pairs": int(n_pairs),
                "n_paired_items": int(st.diff_sizes.size),
            }
        )
    return pd.DataFrame(rows), clusters


def _add_intervals_and_tests(
    table: pd.DataFrame, clusters: _Clusters, confidence: float, n_resamples: int, seed: int
) -> tuple[int, int]:
    """Bootstrap intervals, Wilcoxon p-values (raw and Holm) and stars into ``table``; returns
    the sizes of the two Holm families (the metrics' comparisons that could be tested, and the
    latency record's)."""
    boot = Bootstrapper(confidence=confidence, n_resamples=n_resamples, seed=seed)
    ci_low, ci_high = boot.ci_clusters(clusters.values)  # items resampled with all their seeds
    d_low, d_high = boot.ci_clusters(clusters.diffs)
    p_raw = paired_wilcoxon_many(clusters.item_diffs)  # on per-item means over seeds
    # two families: the metrics' comparisons, and the latency record's. Timings differ from run to
    # run, so in one family they would move the metrics' adjusted p-values (and stars) with them.
    timing = (table["metric"] == LATENCY).to_numpy()
    p_holm = np.full(len(table), np.nan)
    family_size = np.zeros(len(table), dtype=int)
    for members in (~timing, timing):
        p_holm[members] = holm_adjust(p_raw[members])
        family_size[members] = int(np.isfinite(p_raw[members]).sum())
    table["ci_low"], table["ci_high"] = ci_low, ci_high
    table["delta_ci_low"], table["delta_ci_high"] = d_low, d_high
    table["p_value_raw"] = p_raw
    table["p_value_holm"] = p_holm
    table["holm_family_size"] = pd.Series(family_size, dtype="Int64").where(
        np.isfinite(p_raw), pd.NA
    )
    table["stars"] = [stars(p) for p in p_holm]
    return int(np.isfinite(p_raw[~timing]).sum()), int(np.isfinite(p_raw[timing]).sum())


def _rank(table: pd.DataFrame, systems: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranks per metric output, each system's mean rank over headline quality metrics, and the
    systems in leaderboard order (per backbone: the anchor first, then by mean rank)."""
    # outputs without a direction (higher_is_better None) get no rank and stay out of the mean rank
    directed = table["higher_is_better"].map(has_direction).astype(bool)
    hib = table["higher_is_better"].where(directed, True).astype(bool)
    signed = table["mean"].where(hib, -table["mean"]).where(directed)
    table["rank"] = (
        signed.groupby([table["metric"], table["output"]])
        .rank(ascending=False, method="min")
        .astype("Int64")
    )
    table = table.merge(
        systems[["system", "label", "is_anchor", "backbone", "method"]], on="system", how="left"
    )
    # the mean rank is over quality: records that say so (the runner's latency record: not)
    head = table[table["is_headline"] & table["in_mean_rank"]]
    mean_rank = head.groupby("system")["rank"].mean()
    systems["mean_rank"] = systems["system"].map(mean_rank)
    systems = systems.sort_values(
        ["backbone", "is_anchor", "mean_rank", "label"], ascending=[True, False, True, True]
    ).reset_index(drop=True)
    return table, systems


def _per_seed(records: pd.DataFrame) -> pd.DataFrame:
    """Each run's own numbers (its record's mean and interval), one row per output."""
    return records[
        [
            "system",
            "run_id",
            "seed",
            "metric",
            "output",
            "output_index",
            "is_headline",
            "record_mean",
            "record_ci_low",
            "record_ci_high",
            "record_n",
        ]
    ].rename(
        columns={
            "record_mean": "mean",
            "record_ci_low": "ci_low",
            "record_ci_high": "ci_high",
            "record_n": "n",
        }
    )


CHECKPOINT_COLUMNS = [
    "run_id",
    "system",
    "seed",
    "step",
    "val_loss",
    "dev_score",
    "dev_metric",
    "selected",
]


def _checkpoint_frame(loaded: LoadedResults, runs: pd.DataFrame, select: str) -> pd.DataFrame:
    """One row per finished run x kept checkpoint, the one ``select`` picks marked."""
    ck_rows = []
    run_system = dict(zip(runs["run_id"].tolist(), runs["system"].tolist()))
    run_seed = dict(zip(runs["run_id"].tolist(), runs["seed"].tolist()))
    for rid, ck in loaded.checkpoints.items():
        if rid not in run_system:
            continue
        chosen = selected_step(ck, select)
        for c in ck["checkpoints"]:
            ck_rows.append(
                {
                    "run_id": rid,
                    "system": run_system[rid],
                    "seed": run_seed[rid],
                    "step": c["step"],
                    "val_loss": c.get("val_loss"),
                    "dev_score": c.get("dev_score"),
                    "dev_metric": ck.get("dev_metric"),
                    "selected": c["step"] == chosen,
                }
            )
    return pd.DataFrame(ck_rows, columns=CHECKPOINT_COLUMNS)


def _two_way_intervals(table: pd.DataFrame, records: pd.DataFrame, human: set[str]) -> None:
    """A human metric rated on one run per system: its interval from the record, which resamples
    raters and sentences (the item bootstrap alone ignores how much raters differ)."""
    if not human:
        return
    recs = records[records["metric"].isin(human)]
    counts = recs.groupby(["system", "metric", "output"])["run_id"].transform("nunique")
    one = recs[counts == 1].set_index(["system", "metric", "output"])
    for i, key in enumerate(zip(table["system"], table["metric"], table["output"])):
        if key in one.index:
            row = one.loc[key]
            lo, hi = number(row["record_ci_low"]), number(row["record_ci_high"])
            if math.isfinite(lo) and math.isfinite(hi):
                table.loc[table.index[i], ["ci_low", "ci_high"]] = [lo, hi]


def human_metrics(loaded: LoadedResults) -> dict[str, dict[str, Any]]:
    """Per human metric (records with a ``human`` block): raters, tests, agreement, exclusions.

    ``n_raters`` is the largest number of raters kept by any of its tests; ``alpha`` the
    agreement (Krippendorff's alpha, interval) of each test, by test id.
    """
    out: dict[str, dict[str, Any]] = {}
    for (_run_id, metric), info in sorted(loaded.human.items()):
        entry = out.setdefault(
            metric,
            {"n_raters": 0, "n_excluded": 0, "tests": [], "alpha": {}, "kind": info.get("kind")},
        )
        test = str(info.get("test_id", "?"))
        if test not in entry["tests"]:
            entry["tests"].append(test)
        entry["n_raters"] = max(entry["n_raters"], int(info.get("n_raters") or 0))
        entry["n_excluded"] = max(entry["n_excluded"], int(info.get("n_raters_excluded") or 0))
        alpha = info.get("alpha")
        if alpha is not None:
            entry["alpha"][test] = float(alpha)
    return out
