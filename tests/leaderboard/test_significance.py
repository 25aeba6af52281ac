"""Leaderboard statistics that a user publishes: seed-aware intervals and tests, Holm stars.

Each suite here is written with exactly known per-utterance values (``write_scored_runs``), and the
leaderboard's numbers are recomputed independently with scipy. The first tests are built so that
the old behaviour (item x seed rows treated as independent, raw p-values for the stars) gives a
different, wrong answer that a reader of the leaderboard would see.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fake_results import ScoredRun, write_scored_runs
from scipy import stats as scipy_stats

from ttsadapt.leaderboard import build_leaderboard
from ttsadapt.stats import bootstrap_ci

N_RESAMPLES = 4000


def _items(n: int) -> list[str]:
    return [f"utt{i:03d}" for i in range(n)]


def _as_scores(items: list[str], values: np.ndarray) -> dict[str, float]:
    return {item: float(v) for item, v in zip(items, values)}


def _build(tmp_path, runs: list[ScoredRun]) -> tuple[pd.DataFrame, str, str]:
    write_scored_runs(tmp_path, runs)
    paths = build_leaderboard(tmp_path, "exact", n_resamples=N_RESAMPLES)
    csv = pd.read_csv(paths["csv"])
    return csv, paths["md"].read_text(), paths["html"].read_text()


def _pooled(csv: pd.DataFrame, method: str, metric: str) -> pd.Series:
    rows = csv[(csv["scope"] == "pooled") & (csv["method"] == method) & (csv["metric"] == metric)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _stars(p: float) -> str:
    if not p < 0.05:
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*"


def _md_delta_cell(md: str, method: str, metric: str) -> str:
    lines = md.splitlines()
    header = next(ln for ln in lines if ln.startswith("| System |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    row = next(ln for ln in lines if ln.startswith(f"| tiny / {method}"))
    return [c.strip() for c in row.strip("|").split("|")][cols.index(f"Δ {metric}")]


# --------------------------------------------------------------------------- seeds


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """12 utterances, 2 seeds; the seeds of one utterance agree up to small noise.

    The system's true per-utterance improvement is weak: 12 per-utterance differences do not make
    it significant, but the same 12 counted twice (once per seed) do.
    """
    rng = np.random.default_rng(6)
    n = 12
    items = _items(n)
    base = rng.normal(3.0, 0.5, n)  # per-utterance difficulty, shared by every run
    effect = rng.normal(0.35, 1.0, n)
    runs, system, anchor = [], {}, {}
    for seed in (0, 1):
        anchor[seed] = base + rng.normal(0, 0.01, n)
        system[seed] = base + effect + rng.normal(0, 0.01, n)
        runs.append(
            ScoredRun("zero_shot", seed, {"quality": {"q": _as_scores(items, anchor[seed])}})
        )
        runs.append(ScoredRun("lora", seed, {"quality": {"q": _as_scores(items, system[seed])}}))
    csv, md, html = _build(tmp_path_factory.mktemp("two_seeds"), runs)
    return {"csv": csv, "md": md, "html": html, "system": system, "anchor": anchor, "n": n}


def test_seeds_of_one_utterance_are_not_independent_evidence(two_seeds):
    system, anchor = two_seeds["system"], two_seeds["anchor"]
    row = _pooled(two_seeds["csv"], "lora", "quality")
    pair_diffs = [system[s] - anchor[s] for s in (0, 1)]  # seed s against anchor seed s
    item_means = (pair_diffs[0] + pair_diffs[1]) / 2
    # what the old leaderboard tested: 24 item x seed rows as if independent -> p < 0.05
    p_rows = scipy_stats.wilcoxon(np.concatenate(pair_diffs)).pvalue
    assert p_rows < 0.05
    # one difference per utterance (mean over seeds): not significant
    p_items = scipy_stats.wilcoxon((system[0] + system[1]) / 2, (anchor[0] + anchor[1]) / 2).pvalue
    assert p_items > 0.05
    assert row["p_value_raw"] == pytest.approx(p_items, rel=1e-12)
    assert row["p_value_raw"] == pytest.approx(scipy_stats.wilcoxon(item_means).pvalue, rel=1e-12)
    assert row["n_paired_items"] == two_seeds["n"] and row["n_pairs"] == 2 * two_seeds["n"]
    assert row["delta"] == pytest.approx(np.concatenate(pair_diffs).mean())
    # a single comparison: Holm changes nothing, and no star is shown
    assert row["holm_family_size"] == 1 and row["p_value_holm"] == row["p_value_raw"]
    assert pd.isna(row["stars"])
    assert "*" not in _md_delta_cell(two_seeds["md"], "lora", "quality")


@pytest.mark.parametrize("method, what", [("lora", "delta"), ("zero_shot", "mean")])
def test_intervals_resample_utterances_with_all_their_seeds(two_seeds, method, what):
    row = _pooled(two_seeds["csv"], method, "quality")
    if what == "delta":
        per_seed = [two_seeds["system"][s] - two_seeds["anchor"][s] for s in (0, 1)]
        low, high = row["delta_ci_low"], row["delta_ci_high"]
    else:
        per_seed = [two_seeds["anchor"][s] for s in (0, 1)]
        low, high = row["ci_low"], row["ci_high"]
    rows = np.stack(per_seed, axis=1)  # (utterance, seed)

    def pooled_mean(idx, axis=-1):  # the mean of every seed's row of each drawn utterance
        return rows[idx].mean(axis=(-2, -1))

    ref = scipy_stats.bootstrap(
        (np.arange(rows.shape[0]),),
        pooled_mean,
        vectorized=True,
        n_resamples=20000,
        method="BCa",
        random_state=0,
    ).confidence_interval
    width = ref.high - ref.low
    assert abs(low - ref.low) < 0.05 * width and abs(high - ref.high) < 0.05 * width
    # the old interval (24 rows drawn independently) is about sqrt(2) too narrow
    old_low, old_high = bootstrap_ci(rows.ravel(), n_resamples=N_RESAMPLES)
    assert (high - low) > 1.25 * (old_high - old_low)


def test_one_anchor_seed_serves_every_seed_of_the_system(tmp_path):
    rng = np.random.default_rng(1)
    n = 15
    items = _items(n)
    anchor = rng.normal(2.0, 0.4, n)
    system = {s: anchor + 0.3 + rng.normal(0, 0.4, n) for s in (0, 1, 2)}
    runs = [ScoredRun("zero_shot", 0, {"quality": {"q": _as_scores(items, anchor)}})]
    runs += [ScoredRun("lora", s, {"quality": {"q": _as_scores(items, system[s])}}) for s in system]
    csv, md, _ = _build(tmp_path, runs)
    row = _pooled(csv, "lora", "quality")
    item_means = np.mean([system[s] for s in system], axis=0)
    assert row["p_value_raw"] == pytest.approx(
        scipy_stats.wilcoxon(item_means, anchor).pvalue, rel=1e-12
    )
    assert row["n_paired_items"] == n and row["n_pairs"] == 3 * n
    assert row["delta"] == pytest.approx(item_means.mean() - anchor.mean())
    assert "mean over its seeds" in md  # the rule is stated on the page


def test_anchor_paired_seed_by_seed(tmp_path):
    """Seed s of the system against seed s of the anchor: with a seed-specific shift shared by
    both (e.g. a seed-dependent synthesis setting), pairing by seed cancels it."""
    rng = np.random.default_rng(2)
    n = 20
    items = _items(n)
    base = rng.normal(0.0, 1.0, n)
    shift = {0: -1.0, 1: 1.0}
    runs, diffs = [], []
    for seed in (0, 1):
        anchor = base + shift[seed] + rng.normal(0, 0.05, n)
        system = base + shift[seed] + 0.1 + rng.normal(0, 0.05, n)
        diffs.append(system - anchor)
        runs.append(ScoredRun("zero_shot", seed, {"quality": {"q": _as_scores(items, anchor)}}))
        runs.append(ScoredRun("lora", seed, {"quality": {"q": _as_scores(items, system)}}))
    csv, _, _ = _build(tmp_path, runs)
    row = _pooled(csv, "lora", "quality")
    item_means = (diffs[0] + diffs[1]) / 2
    assert row["p_value_raw"] == pytest.approx(scipy_stats.wilcoxon(item_means).pvalue, rel=1e-12)
    assert row["p_value_raw"] < 0.001  # a consistent +0.1 on every utterance
    assert row["delta"] == pytest.approx(np.concatenate(diffs).mean())
    assert row["delta_ci_low"] > 0.05 and row["delta_ci_high"] < 0.15


def test_one_seed_statistics_are_the_item_level_ones(tmp_path):
    rng = np.random.default_rng(3)
    n = 30
    items = _items(n)
    anchor = rng.gamma(2.0, 0.1, n)
    system = anchor * rng.uniform(0.7, 1.2, n)
    values = {"zero_shot": anchor, "lora": system}
    csv, _, _ = _build(
        tmp_path,
        [ScoredRun(m, 0, {"cer_like": {"c": _as_scores(items, v)}}) for m, v in values.items()],
    )
    row = _pooled(csv, "lora", "cer_like")
    # the plain item bootstrap (same resamples; float32 sums, so to rounding) ...
    np.testing.assert_allclose(
        [row["ci_low"], row["ci_high"]], bootstrap_ci(system, n_resamples=N_RESAMPLES), rtol=1e-6
    )
    np.testing.assert_allclose(
        [row["delta_ci_low"], row["delta_ci_high"]],
        bootstrap_ci(system - anchor, n_resamples=N_RESAMPLES),
        rtol=1e-6,
    )
    # ... and scipy's, to Monte-Carlo precision
    for method in ("BCa", "percentile"):
        ref = scipy_stats.bootstrap(
            (system,), np.mean, n_resamples=20000, method=method, random_state=0
        ).confidence_interval
        if method == "percentile":
            got = bootstrap_ci(system, n_resamples=N_RESAMPLES, method="percentile")
        else:
            got = (row["ci_low"], row["ci_high"])
        width = ref.high - ref.low
        assert abs(got[0] - ref.low) < 0.05 * width and abs(got[1] - ref.high) < 0.05 * width
    assert row["p_value_raw"] == pytest.approx(
        scipy_stats.wilcoxon(system, anchor).pvalue, rel=1e-12
    )
    assert row["n_pairs"] == row["n_paired_items"] == n


# --------------------------------------------------------------------------- Holm


def _holm_textbook(p: list[float]) -> list[float]:
    """Holm (1979) from its definition: the i-th smallest of m p-values (1-based) is adjusted to
    max over j <= i of min(1, (m - j + 1) * p_(j)). NaN is no test."""
    tested = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(tested)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, (value, index) in enumerate(tested, start=1):
        running = max(running, min(1.0, (m - rank + 1) * value))
        out[index] = running
    return out


@pytest.fixture(scope="module")
def many_comparisons(tmp_path_factory):
    """Two systems x 6 metrics (one with 2 outputs) against the anchor: 14 comparisons.

    ``weak`` on metric ``m0`` has a raw p-value below 0.05 that does not survive 14 comparisons;
    ``strong`` on ``m1`` survives; the rest have no effect.
    """
    rng = np.random.default_rng(5)  # chosen so that m0 of "weak" has a raw p near 0.015
    n = 20
    items = _items(n)
    metrics = [f"m{j}" for j in range(6)]
    base = {m: rng.normal(0.0, 1.0, n) for m in metrics}
    effects = {("weak", "m0"): 0.8, ("strong", "m1"): 3.0}

    def scores(method: str) -> dict[str, dict[str, dict[str, float]]]:
        out = {}
        for m in metrics:
            shift = effects.get((method, m), 0.0)
            out[m] = {"head": _as_scores(items, base[m] + shift + rng.normal(0, 1.0, n))}
            if m == "m5":  # a second output: one more comparison per system
                out[m]["extra"] = _as_scores(items, rng.normal(0.0, 1.0, n))
        return out

    runs = [ScoredRun("zero_shot", 0, scores("zero_shot"))]
    runs += [ScoredRun(name, 0, scores(name)) for name in ("weak", "strong")]
    csv, md, html = _build(tmp_path_factory.mktemp("holm"), runs)
    return {"csv": csv, "md": md, "html": html}


def test_holm_adjusted_values_over_the_whole_leaderboard(many_comparisons):
    csv = many_comparisons["csv"]
    pooled = csv[csv["scope"] == "pooled"].reset_index(drop=True)
    tested = pooled[pooled["p_value_raw"].notna()]
    assert len(tested) == 14 and (tested["holm_family_size"] == 14).all()
    assert pooled[pooled["is_anchor"]]["p_value_holm"].isna().all()
    expected = _holm_textbook(pooled["p_value_raw"].tolist())
    np.testing.assert_allclose(pooled["p_value_holm"], expected, rtol=1e-12)
    assert pooled["stars"].fillna("").tolist() == [_stars(p) for p in pooled["p_value_holm"]]


def test_holm_matches_statsmodels_on_the_leaderboard(many_comparisons):
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    pooled = many_comparisons["csv"].query("scope == 'pooled' and p_value_raw.notna()")
    ref = multitest.multipletests(pooled["p_value_raw"], method="holm")[1]
    np.testing.assert_allclose(pooled["p_value_holm"], ref, rtol=1e-12)


def test_raw_significance_that_does_not_survive_holm_gets_no_star(many_comparisons):
    csv, md = many_comparisons["csv"], many_comparisons["md"]
    weak = _pooled(csv[csv["output"] == "head"], "weak", "m0")
    assert weak["p_value_raw"] < 0.05 <= weak["p_value_holm"]
    assert pd.isna(weak["stars"])
    cell = _md_delta_cell(md, "weak", "m0")
    assert cell.startswith("+") and not cell.endswith("*")
    strong = _pooled(csv[csv["output"] == "head"], "strong", "m1")
    assert strong["p_value_holm"] < 0.001 and strong["stars"] == "***"
    assert _md_delta_cell(md, "strong", "m1").endswith("***")


def test_timings_are_a_holm_family_of_their_own(tmp_path):
    """The latency record's timings differ each time a suite runs; when they changed from "no
    difference" to "every system ten times slower", the metrics' adjusted p-values (and stars)
    moved with them while they shared one family. Now they do not."""
    rng = np.random.default_rng(5)
    n = 20
    items = _items(n)
    anchor = {m: rng.normal(0.0, 1.0, n) for m in ("m0", "m1")}
    noise = {(s, m): rng.normal(0, 1.0, n) for s in ("weak", "strong") for m in ("m0", "m1")}
    timing = {s: rng.uniform(0.2, 0.4, n) for s in ("zero_shot", "weak", "strong")}

    def build(folder: str, slowdown: float) -> pd.DataFrame:
        runs = [
            ScoredRun(
                "zero_shot",
                0,
                {
                    **{m: {"head": _as_scores(items, anchor[m])} for m in anchor},
                    "latency": {"rtf": _as_scores(items, timing["zero_shot"])},
                },
            )
        ]
        for name, effect in (("weak", 0.6), ("strong", 3.0)):
            scores = {
                m: {"head": _as_scores(items, anchor[m] + effect + noise[name, m])} for m in anchor
            }
            scores["latency"] = {"rtf": _as_scores(items, timing[name] * slowdown)}
            runs.append(ScoredRun(name, 0, scores))
        csv, _, _ = _build(tmp_path / folder, runs)
        return csv[csv["scope"] == "pooled"].reset_index(drop=True)

    same, slower = build("same", 1.0), build("slower", 10.0)
    is_timing = same["metric"] == "latency"
    assert slower.loc[is_timing, "p_value_raw"].max() < same.loc[is_timing, "p_value_raw"].min()
    np.testing.assert_allclose(
        same.loc[~is_timing, "p_value_holm"], slower.loc[~is_timing, "p_value_holm"], rtol=1e-12
    )
    tested = same[same["p_value_raw"].notna()]
    assert (tested.loc[tested["metric"] == "latency", "holm_family_size"] == 2).all()
    assert (tested.loc[tested["metric"] != "latency", "holm_family_size"] == 4).all()


def test_legend_says_stars_are_holm_adjusted(many_comparisons):
    for page in (many_comparisons["md"], many_comparisons["html"]):
        assert "Holm-adjusted" in page and "14 comparisons" in page
        assert "p_value_raw" in page and "p_value_holm" in page


def test_a_metric_without_direction_has_no_arrow_no_rank_and_no_part_in_the_mean_rank(tmp_path):
    import json

    from ttsadapt.leaderboard import build_leaderboard, load_results, summarise

    items = [f"u{i}" for i in range(8)]
    anchor = {"q": {"q": {u: 1.0 for u in items}}, "pitch": {"hz": {u: 120.0 for u in items}}}
    better = {"q": {"q": {u: 2.0 for u in items}}, "pitch": {"hz": {u: 90.0 for u in items}}}
    write_scored_runs(tmp_path, [ScoredRun("zero_shot", 0, anchor), ScoredRun("lora", 0, better)])
    for path in (tmp_path / "exact" / "runs").glob("*/records/pitch.json"):
        record = json.loads(path.read_text())
        record["outputs"]["hz"]["higher_is_better"] = None
        path.write_text(json.dumps(record))
    summary = summarise(load_results(tmp_path / "exact"))
    table = summary.table
    assert table[table["metric"] == "pitch"]["rank"].isna().all()
    assert table[table["metric"] == "q"]["rank"].notna().all()
    lora = summary.systems[~summary.systems["is_anchor"]]
    assert float(lora["mean_rank"].iloc[0]) == 1.0  # the q rank alone
    md = build_leaderboard(tmp_path, "exact")["md"].read_text()
    assert "pitch.hz" in md and "pitch.hz ↑" not in md and "pitch.hz ↓" not in md
    assert "q.q ↑" in md
