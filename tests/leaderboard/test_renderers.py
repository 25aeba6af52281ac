"""Leaderboard formats come from a hook; the library tells plugins once a leaderboard is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import leaderboard_plugin_double as double
import pytest
from fake_results import make_results

from ttsadapt.cli import main
from ttsadapt.errors import PluginError
from ttsadapt.leaderboard import LeaderboardRenderer, build_leaderboard, renderer_classes
from ttsadapt.leaderboard.figures import quality_metric
from ttsadapt.leaderboard.renderers import CsvRenderer, HtmlRenderer, MarkdownRenderer
from ttsadapt.markers import hookimpl
from ttsadapt.plugin_manager import create_plugin_manager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))  # the core tests' helpers
from helpers import DOUBLES, make_corpus, write_suite

PLUGIN = "leaderboard_plugin_double"


@pytest.fixture
def fake(tmp_path):
    return make_results(
        tmp_path / "res", n_items=10, ranks=(8,), recipes=("natural",), n_failed=0, n_unfinished=0
    )


@pytest.fixture(autouse=True)
def _fresh_record():
    double.WRITTEN.clear()
    yield
    double.WRITTEN.clear()


def _pm(*extra, **kw):
    pm, _ = create_plugin_manager(extra_modules=list(extra), autoload=False, **kw)
    return pm


def test_the_builtin_formats_are_registered_through_the_hook():
    assert renderer_classes(_pm()) == [MarkdownRenderer, CsvRenderer, HtmlRenderer]
    assert renderer_classes(None) == [MarkdownRenderer, CsvRenderer, HtmlRenderer]
    assert [(c.format, c.suffix) for c in renderer_classes(_pm(PLUGIN))][-1] == ("jsonl", ".jsonl")


def test_a_plugin_format_is_written_and_the_written_hook_fires_once(fake):
    paths = build_leaderboard(fake.suite_dir.parent, fake.suite, audio="none", plugins=_pm(PLUGIN))
    assert set(paths) == {"md", "csv", "html", "jsonl"}
    assert paths["jsonl"] == fake.suite_dir / "leaderboard.jsonl"
    rows = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    n_systems = len({r["system"] for r in rows})
    assert n_systems == len(fake.systems) and len(rows) == n_systems * 4  # 4 headline metrics
    assert {r["system"] for r in rows if r["anchor"]} == {"voxcpm2-tiny / zero_shot"}
    assert [(fake.suite, paths)] == double.WRITTEN


def test_python_callers_without_a_plugin_manager_get_the_builtin_formats(fake, monkeypatch):
    monkeypatch.setenv("TTSADAPT_DISABLE_PLUGIN_AUTOLOAD", "1")
    paths = build_leaderboard(fake.suite_dir.parent, fake.suite, audio="none")
    assert set(paths) == {"md", "csv", "html"} and all(p.is_file() for p in paths.values())
    assert not double.WRITTEN  # the double is not installed: nobody else was told


class _Duplicate:
    class Csv2(LeaderboardRenderer):
        format = "csv"
        suffix = ".2.csv"

    @hookimpl
    def ttsadapt_register_leaderboard_renderers(self):
        return [self.Csv2]


class _NotARenderer:
    @hookimpl
    def ttsadapt_register_leaderboard_renderers(self):
        return [dict]


class _NoSuffix:
    class Bare(LeaderboardRenderer):
        format = "bare"

    @hookimpl
    def ttsadapt_register_leaderboard_renderers(self):
        return [self.Bare]


def test_a_format_registered_twice_names_both_plugins(fake):
    pm = _pm()
    pm.register(_Duplicate(), name="dup")
    with pytest.raises(PluginError, match=r"format 'csv' is registered twice: by plugin .*'dup'"):
        build_leaderboard(fake.suite_dir.parent, fake.suite, audio="none", plugins=pm)
    assert not (fake.suite_dir / "leaderboard.md").exists()  # checked before anything is written


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (_NotARenderer(), r"plugin 'odd' returned <class 'dict'>.*LeaderboardRenderer"),
        (_NoSuffix(), r"plugin 'odd': Bare needs a `format` .* and a `suffix`"),
    ],
)
def test_a_malformed_renderer_names_its_plugin(plugin, message):
    pm = _pm()
    pm.register(plugin, name="odd")
    with pytest.raises(PluginError, match=message):
        renderer_classes(pm)


def test_ttsadapt_leaderboard_fires_the_written_hook_once(fake, capsys):
    results = str(fake.suite_dir.parent)
    rc = main(["-p", PLUGIN, "leaderboard", "--results", results, "--no-audio"])
    assert rc == 0, capsys.readouterr().err
    assert [suite for suite, _ in double.WRITTEN] == [fake.suite]
    assert set(double.WRITTEN[0][1]) == {"md", "csv", "html", "jsonl"}


def test_ttsadapt_run_fires_the_written_hook_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTSADAPT_DISABLE_PLUGIN_AUTOLOAD", "1")
    suite = write_suite(tmp_path, make_corpus(tmp_path / "corpus"))
    rc = main(["-p", DOUBLES, "-p", PLUGIN, "run", str(suite), "--results", str(tmp_path / "r")])
    assert rc == 0, capsys.readouterr().err
    assert [(s, sorted(p)) for s, p in double.WRITTEN] == [
        ("t", ["audio", "csv", "html", "jsonl", "md"])
    ]


def test_the_quality_metric_of_the_checkpoint_figure_is_the_suites_dev_metric(fake):
    from ttsadapt.leaderboard import load_results, summarise

    summary = summarise(load_results(fake.suite_dir), n_resamples=200)
    assert set(summary.checkpoints["dev_metric"].dropna()) == {"dnsmos"}
    assert quality_metric(summary) == "dnsmos"
    summary.checkpoints["dev_metric"] = "speaker_sim"  # another suite's dev metric
    assert quality_metric(summary) == "speaker_sim"
    summary.checkpoints["dev_metric"] = None  # no dev metric: the first metric where higher wins
    head = summary.table[summary.table["is_headline"] & summary.table["higher_is_better"]]
    assert quality_metric(summary) == head["metric"].iloc[0]
