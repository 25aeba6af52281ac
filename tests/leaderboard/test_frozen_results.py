"""Results written by an earlier version keep giving the same leaderboard.

``tests/fixtures/results_v1/quick`` is the quick suite's results folder as the code of
2026-12-01 (commit d432f93) wrote it, with the audio, weights, logs and TensorBoard files left out:
records, per-item scores, run summaries, configs, checkpoint indexes, curves and synthesis rows.
``expected_leaderboard.{csv,md}`` beside it are the leaderboard that code built from it
(``ttsadapt leaderboard --results <copy> --suite quick --no-audio``).

The Markdown must be identical; the CSV is compared value for value: every text cell equal, every
number equal within a relative tolerance of 1e-9 (a different summation order may move the last
bits of a float, nothing more).

One deliberate change since: the latency record's comparisons became a Holm family of their own
(timings differ from run to run and moved the metrics' adjusted p-values). The expected files were
rebuilt then; against d432f93's they differ only in ``p_value_holm`` (7 cells), ``holm_family_size``
and the legend's sentence about the family — no star changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ttsadapt.leaderboard import build_leaderboard, load_results

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_v1"
RTOL = 1e-9


@pytest.fixture
def rebuilt(tmp_path):
    shutil.copytree(FIXTURE / "quick", tmp_path / "quick")
    paths = build_leaderboard(tmp_path, "quick", audio="none")
    return paths


def _column_diffs(col: str, expected: pd.Series, got: pd.Series) -> list[str]:
    """Where one CSV column differs: numbers beyond ``RTOL``, text (or a number against text)."""
    if pd.api.types.is_numeric_dtype(expected) and pd.api.types.is_numeric_dtype(got):
        e, g = expected.to_numpy(float), got.to_numpy(float)
        same = np.isclose(g, e, rtol=RTOL, atol=1e-12, equal_nan=True)
    else:
        e = expected.fillna("").astype(str).to_numpy()
        g = got.fillna("").astype(str).to_numpy()
        same = e == g
    return [f"row {i}, {col}: expected {e[i]!r}, got {g[i]!r}" for i in np.flatnonzero(~same)]


def test_frozen_results_give_the_same_csv_value_for_value(rebuilt):
    expected = pd.read_csv(FIXTURE / "expected_leaderboard.csv")
    got = pd.read_csv(rebuilt["csv"])
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) == 130  # 5 systems x 13 outputs x (pooled, seed 0)
    diffs = [d for col in expected.columns for d in _column_diffs(col, expected[col], got[col])]
    assert not diffs, "\n".join(diffs[:20])


def test_frozen_results_give_the_same_markdown(rebuilt):
    expected = (FIXTURE / "expected_leaderboard.md").read_text(encoding="utf-8")
    assert rebuilt["md"].read_text(encoding="utf-8") == expected


def test_frozen_results_load_every_run_and_mark_the_anchor():
    loaded = load_results(FIXTURE / "quick")
    assert len(loaded.run_ids) == 5
    assert not loaded.failed_runs and not loaded.unfinished_runs and not loaded.failed_records
    anchors = set(loaded.records.loc[loaded.records["is_anchor"], "run_id"])
    assert anchors == {"voxcpm2-zero_shot-a8834778f009"}
    heads = loaded.records[loaded.records["is_headline"]].drop_duplicates("metric")
    assert dict(zip(heads["metric"], heads["output"])) == {
        "cer": "cer",
        "dnsmos": "ovrl",
        "latency": "rtf",
        "speaker_similarity": "cosine_01",
        "wada_snr": "snr_db",
    }
