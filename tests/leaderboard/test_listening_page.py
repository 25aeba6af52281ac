"""The leaderboard page you can hear, in a real headless Chromium at 1,400 px.

Players are present and the browser decodes their audio (finite ``duration`` after
``loadedmetadata``), transcripts with their diff are shown, filters work, the main table does not
overflow, and the page is written readable by others, with audio beside it or embedded.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from chromium import CHROMIUM, FLAGS
from fake_results import add_audio, make_results

from ttsadapt.leaderboard import build_leaderboard, transcript_diff


def _suite(root: Path):
    fake = make_results(
        root,
        suite="demo",
        n_items=6,
        seeds=(0, 1),
        ranks=(8, 64),
        recipes=("natural", "upsampled"),
        full_finetune=False,
        n_failed=0,
        n_unfinished=0,
    )
    manifest = add_audio(fake)
    return fake, manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fake, manifest = _suite(root)
    old = os.umask(0o022)
    try:
        paths = build_leaderboard(
            root, "demo", headlines={"dnsmos": "ovrl"}, n_resamples=300, manifest=manifest
        )
    finally:
        os.umask(old)
    return fake, manifest, paths


def test_transcript_diff_marks_words():
    segs = transcript_diff("The quick brown fox.", "the quick brawn fox jumps")
    assert segs == [["=", "the quick"], ["s", "brawn", "brown"], ["=", "fox"], ["i", "jumps"]]
    assert transcript_diff("a b c", "a c") == [["=", "a"], ["d", "b"], ["=", "c"]]
    # a language written without spaces compares characters
    assert transcript_diff("ខ្ញុំ", "ខ្ញុ", "km")[-1] == ["d", "ំ"]


def test_page_and_audio_folder_are_written_readable(built):
    fake, _, paths = built
    html = paths["html"].read_text()
    audio_dir = paths["html"].parent / "leaderboard_audio"
    oggs = sorted(audio_dir.rglob("*.ogg"))
    # one clip per system (its first seed) per item, plus recordings and prompts
    n_systems = len(fake.systems)
    assert len(oggs) == n_systems * 6 + 6 + 3
    assert all(p.read_bytes()[:4] == b"OggS" for p in oggs)
    for p in [paths["html"], paths["md"], paths["csv"], audio_dir, oggs[0]]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o044 == 0o044, f"{p}: mode {oct(mode)} is not readable by others"
    assert 'src="http' not in html and "leaderboard_audio/" in html
    assert "1 (seed" not in html and "2 (seeds 0, 1)" in html  # the Seeds column counts seeds


def test_embedded_audio_page_has_no_sibling_folder(tmp_path):
    fake, manifest = _suite(tmp_path)
    folder = build_leaderboard(tmp_path, "demo", n_resamples=200, manifest=manifest)
    folder_size = folder["html"].stat().st_size
    assert (tmp_path / "demo" / "leaderboard_audio").is_dir()
    embedded = build_leaderboard(
        tmp_path, "demo", n_resamples=200, manifest=manifest, audio="embed"
    )
    html = embedded["html"].read_text()
    assert not (tmp_path / "demo" / "leaderboard_audio").exists()
    assert html.count("data:audio/ogg;base64,") == len(fake.systems) * 6 + 6 + 3
    assert embedded["html"].stat().st_size > folder_size


@pytest.mark.browser
def test_listening_page_in_headless_chromium(built, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from PIL import Image

    fake, _, paths = built
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            failed: list[str] = []
            errors: list[str] = []
            page = context.new_page()
            # a media element that has its metadata may stop the rest of the download
            # (net::ERR_ABORTED); a missing file is net::ERR_FILE_NOT_FOUND
            page.on(
                "requestfailed",
                lambda r: (
                    None
                    if "ABORTED" in (r.failure or "")
                    else failed.append(f"{r.url}: {r.failure}")
                ),
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(paths["html"].as_uri(), wait_until="load")
            # the main table fits 1,400 px: no horizontal scrolling of it or of the page
            fit = page.evaluate(
                """() => {const t = document.getElementById('table0');
                const w = t.parentElement;
                return {table: t.scrollWidth, wrap: w.clientWidth, wrapScroll: w.scrollWidth,
                        page: document.documentElement.scrollWidth,
                        viewport: document.documentElement.clientWidth}}"""
            )
            assert fit["wrapScroll"] <= fit["wrap"], fit
            assert fit["page"] <= fit["viewport"], fit
            assert page.locator("#table0 tbody tr").count() == len(fake.systems)
            assert "Mean rank" in page.inner_text("#table0 thead")
            # the system column stays in place when the table scrolls sideways
            assert page.eval_on_selector("#table0 td.sys", "e => getComputedStyle(e).position") == (
                "sticky"
            )
            sections = page.locator("#listen-items section.utt")
            assert sections.count() == 6
            first = sections.first
            # every system side by side, plus the prompt and the real recording
            assert first.locator(".cell").count() == len(fake.systems)
            assert first.locator("audio").count() == len(fake.systems) + 2
            assert "real recording" in first.inner_text()
            # transcripts with the misheard word marked against the text
            assert page.locator("#listen-items .cell .tr").count() >= len(fake.systems)
            assert page.locator("#listen-items mark.sub", has_text="wrong").count() >= 1
            # the browser can decode every clip of the first sentence
            durations = page.evaluate(
                """async () => {
                  const sec = document.querySelector('#listen-items section.utt');
                  const out = [];
                  for (const a of sec.querySelectorAll('audio')) {
                    out.push(await new Promise(res => {
                      a.addEventListener('loadedmetadata', () => res(a.duration), {once: true});
                      a.addEventListener('error', () => res(-1), {once: true});
                      a.preload = 'metadata'; a.load();
                    }));
                  }
                  return out;
                }"""
            )
            assert len(durations) == len(fake.systems) + 2
            assert all(np.isfinite(d) and 0.5 < d < 0.7 for d in durations), durations
            # filters: one speaker; one system
            page.select_option("#f-speaker", "spk1")
            assert sections.count() == 2
            boxes = page.locator("#f-systems input")
            for i in range(1, boxes.count()):
                boxes.nth(i).uncheck()
            assert page.locator("#listen-items .cell").count() == 2
            page.select_option("#f-speaker", "")
            page.select_option("#f-metric", label="cer")
            score = page.locator("#listen-items .cell .scores").first.inner_text()
            assert score.startswith("cer ") and "dnsmos" not in score
            # each cell links to its run folder, which exists
            href = page.locator("#listen-items .cell a.name").first.get_attribute("href")
            assert (paths["html"].parent / href / "config.json").is_file()
            assert not failed, f"requests failed: {failed}"
            assert not errors, f"page errors: {errors}"
            for i in range(boxes.count()):
                boxes.nth(i).check()
            shot = tmp_path / "leaderboard_listen.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[1] >= 1400 and img.std() > 10
