"""The results models of the files a run writes besides records and scores (synthesis rows,
curve rows, the checkpoint index) and of ``ttsadapt score``'s rows read every such file of the
frozen version-1 folder and write it back byte for byte; numbers keep their type; a newer
version is refused; a row that is not one is refused naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttsadapt.results import (
    CheckpointIndex,
    CurveRow,
    ManifestScoreRow,
    ResultsError,
    SynthesisRow,
    read_rows,
    write_rows,
)

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "results_v1" / "quick" / "runs"


@pytest.mark.parametrize(
    ("name", "model", "n_files"),
    [("synthesis.jsonl", SynthesisRow, 5), ("curves.jsonl", CurveRow, 4)],
)
def test_every_row_file_of_the_frozen_folder_writes_back_unchanged(tmp_path, name, model, n_files):
    paths = sorted(p for p in RUNS.glob(f"*/{name}") if p.stat().st_size)
    assert len(paths) == n_files
    for path in paths:
        rows = read_rows(model, path)
        assert rows and all(r.schema_version == 1 for r in rows)
        write_rows(tmp_path / name, rows)
        assert (tmp_path / name).read_text() == path.read_text(), path


def test_synthesis_and_curve_rows_are_read_into_fields():
    run = RUNS / "voxcpm2-lora-009742f8b9dc"
    synth = read_rows(SynthesisRow, run / "synthesis.jsonl")
    assert all(
        r.ok and r.duration_s and r.rtf == pytest.approx(r.synth_s / r.duration_s) for r in synth
    )
    curves = read_rows(CurveRow, run / "curves.jsonl")
    assert [r.step for r in curves] == sorted(r.step for r in curves)
    assert {r.dev_metric for r in curves if r.dev_score is not None} == {"dnsmos"}
    train = next(r for r in curves if r.train_loss is not None)
    assert train.model_extra and "train_loss_diff" in train.model_extra  # a backbone's own parts


def test_every_checkpoint_index_of_the_frozen_folder_writes_back_unchanged(tmp_path):
    paths = sorted(RUNS.glob("*/checkpoints.json"))
    assert len(paths) == 5
    used = {}
    for path in paths:
        index = CheckpointIndex.from_disk(path)
        index.to_disk(tmp_path / "c.json")
        assert (tmp_path / "c.json").read_text() == path.read_text(), path
        used[path.parent.name] = index.used
    trained = {k: v for k, v in used.items() if "lora" in k}
    assert used["voxcpm2-zero_shot-a8834778f009"] is None and all(trained.values())
    lora = CheckpointIndex.from_disk(RUNS / "voxcpm2-lora-009742f8b9dc" / "checkpoints.json")
    assert [c.step for c in lora.checkpoints] == [20, 40, 60] and lora.used == 40


def test_numbers_keep_their_type_and_rows_without_version_write_none():
    row = SynthesisRow(item="a", duration_s=3, synth_s=0.5, error=None)
    assert json.dumps(row.to_dict(), sort_keys=True) == (
        '{"duration_s": 3, "error": null, "item": "a", "synth_s": 0.5}'
    )
    assert CurveRow(step=1, train_loss=0.25).to_dict() == {"step": 1, "train_loss": 0.25}
    assert CurveRow(step=1, schema=2).to_dict()["schema"] == 2  # a later version says so


def test_manifest_score_rows_keep_the_shape_ttsadapt_score_writes():
    row = {
        "id": "x",
        "audio": "wavs/x.wav",
        "speaker": "",
        "language": "",
        "values": {"wada_snr": {"snr_db": 12.5}},
        "errors": {"pesq": "not applicable: no reference_audio"},
        "extra": {},
    }
    assert ManifestScoreRow.from_dict(row).to_dict() == row


def test_rows_that_are_not_rows_are_refused_naming_file_line_and_field(tmp_path):
    path = tmp_path / "curves.jsonl"
    path.write_text('{"step": 1, "train_loss": 0.5}\n{"train_loss": 0.4}\n')
    with pytest.raises(ResultsError, match=r"curves.jsonl:2: missing field\(s\) step"):
        read_rows(CurveRow, path)
    (tmp_path / "c.json").write_text('{"checkpoints": [], "schema": 9}')
    with pytest.raises(ResultsError, match="checkpoint index of schema 9, newer"):
        CheckpointIndex.from_disk(tmp_path / "c.json")


def test_a_fresh_run_folder_reads_and_writes_back_through_the_models(tmp_path):
    from helpers import DOUBLES, make_corpus, write_suite

    from ttsadapt.registry import build_registry
    from ttsadapt.results import MetricRecord, RunSummary, ScoreRow
    from ttsadapt.runner import SuiteRunner
    from ttsadapt.suite import load_suite

    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    suite = load_suite(write_suite(tmp_path, make_corpus(tmp_path / "corpus")), registry)
    assert SuiteRunner(suite, registry, results=tmp_path / "res").run().counts() == {"ok": 3}
    files = {
        "run.json": RunSummary,
        "records/*.json": MetricRecord,
        "checkpoints.json": CheckpointIndex,
        "scores/*.jsonl": ScoreRow,
        "synthesis.jsonl": SynthesisRow,
        "curves.jsonl": CurveRow,
    }
    seen = dict.fromkeys(files, 0)
    for pattern, model in files.items():
        for path in sorted((tmp_path / "res" / "t" / "runs").glob(f"*/{pattern}")):
            again = tmp_path / f"again{path.suffix}"
            if path.suffix == ".jsonl":
                write_rows(again, read_rows(model, path))
            else:
                model.from_disk(path).to_disk(again)
            assert again.read_text() == path.read_text(), path
            seen[pattern] += 1
    # three runs, two of them trained (a curve and a checkpoint index each)
    assert seen == {
        "run.json": 3,
        "records/*.json": 6,
        "checkpoints.json": 2,
        "scores/*.jsonl": 6,
        "synthesis.jsonl": 3,
        "curves.jsonl": 2,
    }
