"""End to end in headless Chromium: export a listening test, let scripted raters fill the page
(one stops and resumes), import the files they download, and find MOS with its interval and
Krippendorff's alpha on the leaderboard page."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from chromium import CHROMIUM
from chromium import FLAGS as CHROMIUM_FLAGS
from fake_results import add_audio, make_results
from scripted_raters import Rater, answer_trial, true_quality

from ttsadapt.leaderboard import build_leaderboard
from ttsadapt.listen import export_test, import_ratings

FLAGS = [*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
QUALITY = [3.0, 4.0, 3.5, 2.5]

pytestmark = pytest.mark.browser


def _fill(page, rater: Rater, key, truth, stop_after: int | None = None) -> int:
    """Answer trials on the page as ``rater`` until done (or ``stop_after`` trials); return how
    many were answered in this sitting."""
    rng = np.random.default_rng(rater.seed)
    done = 0
    while page.locator("#test").is_visible():
        if stop_after is not None and done >= stop_after:
            break
        buttons = page.locator("#trial button.play")
        tokens = [buttons.nth(i).get_attribute("data-token") for i in range(buttons.count())]
        check = page.locator("#check")
        trial = {"id": "?", "s": tokens}
        if check.count():
            text = check.inner_text()
            trial["check"] = {"text": text, "answer": re.search(r"choose (\S+)\.", text).group(1)}
        assert page.locator("#next").is_disabled()  # nothing rated or played yet
        for i in range(buttons.count()):
            buttons.nth(i).click()
        value = answer_trial(rater, trial, key, truth, rng)["ratings"][tokens[0]]
        page.check(f'input[name=mos][value="{int(value)}"]')
        page.locator("#next").click()
        done += 1
    return done


def test_listening_test_end_to_end(tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    fake = make_results(
        tmp_path,
        suite="demo",
        n_items=4,
        seeds=(0,),
        ranks=(8, 64),
        recipes=("natural",),
        full_finetune=True,
        n_failed=0,
        n_unfinished=0,
        metrics=("dnsmos", "cer"),
    )
    manifest = add_audio(fake, seconds=0.4)
    ex = export_test(
        tmp_path, "demo", tmp_path / "test", n_items=4, n_raters=3, manifest=manifest, seed=11
    )
    key = json.loads(ex.key_path.read_text())
    truth = true_quality(key, dict(zip(ex.systems, QUALITY)))
    raters = [Rater("r1", seed=1), Rater("r2", seed=2, sd=0.4), Rater("r3", careless=True)]
    files = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1000, "height": 800},
            accept_downloads=True,
        )
        try:
            errors: list[str] = []
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            for rater in raters:
                page.goto((ex.out_dir / "index.html").as_uri() + f"#{rater.code}")
                assert "rate the overall quality" in page.inner_text("#instructions")
                page.click("#begin")
                first = _fill(page, rater, key, truth, stop_after=5 if rater.code == "r2" else None)
                if rater.code == "r2":  # stop, close the page, come back: answers were kept
                    assert first == 5
                    page.goto("about:blank")
                    page.goto((ex.out_dir / "index.html").as_uri() + "#r2")
                    assert "Resume (5 answered)" in page.inner_text("#begin")
                    page.click("#begin")
                    assert "5 answered" in page.inner_text("#where")
                    second = _fill(page, rater, key, truth)
                    assert first + second == ex.n_trials_per_rater
                assert page.locator("#done").is_visible()
                with page.expect_download() as dl:
                    page.click("#download-end")
                path = tmp_path / "ratings" / f"{rater.code}.json"
                path.parent.mkdir(exist_ok=True)
                dl.value.save_as(str(path))
                files.append(path)
            assert not errors, errors
            saved = json.loads(files[1].read_text())
            assert saved["rater"] == "r2" and saved["finished"] is True
            assert len(saved["answers"]) == ex.n_trials_per_rater
            assert saved["started"] < saved["saved"]
            res = import_ratings(files, tmp_path, "demo", n_boot=500)
            assert [r.rater for r in res.raters if r.excluded] == ["r3"]
            assert all(r.checks_passed == 2 for r in res.raters)
            means = [res.systems[label]["mean"] for label in ex.systems]
            assert int(np.argmax(means)) == int(np.argmax(QUALITY))
            paths = build_leaderboard(tmp_path, "demo", n_resamples=300, manifest=manifest)
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(paths["html"].as_uri())
            head = page.inner_text("#table0 thead")
            assert "mos" in head and "human, 2 raters" in head
            col = [t.strip() for t in page.locator("#table0 thead th").all_inner_texts()]
            k = next(i for i, t in enumerate(col) if t.startswith("mos"))
            best = ex.systems[int(np.argmax(QUALITY))]
            row = page.locator("#table0 tbody tr", has_text=best)
            cell = row.locator("td").nth(k).inner_text()
            m = re.match(r"([\d.]+).*\[([\d.]+), ([\d.]+)\]", cell.replace("\n", " "))
            assert m, cell
            mean, lo, hi = map(float, m.groups())
            assert lo < mean < hi
            assert mean == pytest.approx(res.systems[best]["mean"], abs=0.01)
            human = page.inner_text("#table-human")
            assert f"{res.alpha:.2f}" in human and "mos" in human
            assert page.locator("#table-agreement tbody tr").count() == 2  # cer, dnsmos
            wrap = page.evaluate(
                "() => {const w = document.getElementById('table0').parentElement;"
                " return [w.scrollWidth, w.clientWidth]}"
            )
            assert wrap[0] <= wrap[1]
            page.screenshot(path=str(tmp_path / "leaderboard_with_mos.png"), full_page=True)
        finally:
            context.close()
