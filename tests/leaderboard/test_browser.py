"""The HTML leaderboard opened in a real headless Chromium: rows, figures, a non-blank screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from chromium import CHROMIUM, FLAGS
from fake_results import make_results

from ttsadapt.leaderboard import build_leaderboard

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fake = make_results(root, suite="demo", n_items=30, seeds=(0, 1))
    paths = build_leaderboard(root, "demo", headlines={"dnsmos": "ovrl"}, n_resamples=500)
    return fake, paths["html"]


def test_html_is_self_contained(page_path):
    html = page_path[1].read_text()
    assert "<svg" in html
    for remote in ("http://", "https://", "//cdn"):
        # matplotlib's SVG carries its namespace URLs; no resource is fetched from them
        assert f'src="{remote}' not in html and f'href="{remote}' not in html


def test_html_renders_in_headless_chromium(page_path, tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from PIL import Image

    fake, html_path = page_path
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
            page = context.new_page()
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(html_path.as_uri(), wait_until="load")
            assert "Leaderboard: demo" in page.title() + page.inner_text("h1")
            rows = page.locator("#table0 tbody tr")
            assert rows.count() == len(fake.systems)
            assert "(anchor)" in rows.first.inner_text()
            svgs = page.locator(".figure svg")
            assert svgs.count() == 3
            for i in range(svgs.count()):
                box = svgs.nth(i).bounding_box()
                assert box and box["width"] > 200 and box["height"] > 100
            # clicking a header sorts the table (the "sortable-looking" table really sorts)
            page.locator("#table0 th", has_text="Mean rank").click()
            first = page.locator("#table0 tbody tr").first.inner_text()
            assert "rank=64" in first
            assert not failed, f"requests failed: {failed}"
            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[0] > 1000 and img.shape[1] >= 1400
    assert img.std() > 10  # not blank
    assert (img < 128).mean() > 0.005  # some dark ink: text and plots
