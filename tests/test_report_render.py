"""`jaxperf report`'s page as a person sees it: rendered by headless Chromium 1400 px wide, into screenshots
and into the browser's own measure of its layout.

Chromium is no Python dependency. Where none is installed these tests skip and say so, except under CI
(``JAXPERF_REQUIRE_BROWSER`` set, as ``.ci/run`` sets it, or a CI service's ``CI``), where they fail naming
what to install: a CI machine must never skip the page's only look through a browser silently.
``.ci/run`` installs it as root.
The page's structure (self-contained, one image per plot) is checked without a browser in
test_cli_units.py, its content in test_page_units.py.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_jaxperf import cli, plots

from .test_cli_units import report_records, write_results
from .test_page_units import user_records, write_baselines

#: The width a reader's browser window has on a laptop or a desktop: the page must fit it.
WIDTH = 1400
HEIGHT = 4000
#: Where a browser is found, in the order tried.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Added to a copy of the page only (the page itself has no script): once laid out, the browser writes
#: into the page what it measured, and --dump-dom prints it.
MEASURE = """
addEventListener("load", () => {
  const boxes = [...document.querySelectorAll(".tables")].map((box) => ({
    section: box.closest("section").querySelector("h2").textContent,
    scroll: box.scrollWidth,
    client: box.clientWidth,
  }));
  const cells = [...document.querySelectorAll("td, th")].map((cell) => cell.getBoundingClientRect().right);
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    viewport: innerWidth, page: document.documentElement.scrollWidth, boxes, cells: cells.length,
    rightmost: Math.max(...cells),
  });
  document.body.append(out);
});
"""


def find_browser() -> str:
    """A headless Chromium's command; the test skipped without one, but failed under CI
    (``JAXPERF_REQUIRE_BROWSER`` or ``CI`` set)."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is not None:
        return found
    missing = f"no headless Chromium on this machine ({', '.join(BROWSERS)}): apt-get install chromium"
    if os.environ.get("JAXPERF_REQUIRE_BROWSER") or os.environ.get("CI"):
        pytest.fail(
            f"{missing}. CI must run this check, not skip it: .ci/run installs it when run as root",
            pytrace=False,
        )
    pytest.skip(missing)


@pytest.fixture
def browser() -> str:
    """A headless Chromium's command (see find_browser)."""
    return find_browser()


def test_without_a_browser_ci_fails_naming_it_and_a_local_run_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    for required in ("JAXPERF_REQUIRE_BROWSER", "CI"):
        monkeypatch.setenv(required, "1")
        with pytest.raises(pytest.fail.Exception, match=r"apt-get install chromium\. CI must run this check"):
            find_browser()
        monkeypatch.delenv(required)
    monkeypatch.delenv("JAXPERF_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no headless Chromium on this machine"):
        find_browser()


def _chromium(browser: str, page: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}", *options, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def _measured(browser: str, page: Path) -> dict[str, Any]:
    """What the browser measured of ``page`` laid out at WIDTH (see MEASURE)."""
    copy = page.with_name(f"measured-{page.name}")
    copy.write_text(page.read_text().replace("</head>", f"<script>{MEASURE}</script></head>", 1))
    dom = _chromium(browser, copy, "--dump-dom").stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, f"the browser measured nothing: {dom[-500:]!r}"
    measured: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return measured


@pytest.mark.skipif(not plots.available(), reason="matplotlib (the 'report' extra) is not installed")
def test_the_page_renders_with_its_plots(tmp_path: Path, browser: str) -> None:
    from PIL import Image  # matplotlib's own dependency

    results = write_results(tmp_path / "results.json", report_records())
    page = tmp_path / "report.html"
    assert cli.main(["report", str(results), "-o", str(page), "--no-history"]) == cli.EXIT_OK
    screenshot = tmp_path / "page.png"
    _chromium(browser, page, f"--screenshot={screenshot}")
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    # Text and tables are greys; the plots bring colour (about 290,000 clearly coloured pixels on this
    # page, and 1,700 distinct colours against 450 for the same page without its plots). A page whose
    # images failed to decode has almost no coloured pixel.
    pixels = np.asarray(image).astype(int)
    coloured = int(((pixels.max(axis=-1) - pixels.min(axis=-1)) > 60).sum())
    assert coloured > 50_000
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 1000
    # The top of the page is not blank: the title and the summary are drawn.
    top = image.crop((0, 0, WIDTH, 200)).getcolors(maxcolors=1 << 20)
    assert top is not None
    assert len(top) > 10


def test_a_users_page_fits_1400_px_without_a_table_scrolling_sideways(tmp_path: Path, browser: str) -> None:
    # A run as a user's: long test ids, a real audit's length, a regression explained with its trace, the
    # history of a baselines folder outside git.
    results = write_results(tmp_path / "results.json", user_records(tmp_path / "traces"))
    page = tmp_path / "report.html"
    baselines = write_baselines(tmp_path / "baselines")
    assert cli.main(["report", str(results), "-o", str(page), "--baselines", str(baselines)]) == cli.EXIT_OK
    _chromium(browser, page, f"--screenshot={tmp_path / 'page.png'}")  # for a person to look at
    measured = _measured(browser, page)
    assert measured["viewport"] == WIDTH
    sections = {box["section"] for box in measured["boxes"]}
    assert {"Checks and verdicts", "Why it regressed", "Fidelity against float32", "History of the baselines",
            "Profiler traces"} <= sections  # fmt: skip
    scrolling = [box for box in measured["boxes"] if box["scroll"] > box["client"]]
    assert scrolling == [], "tables wider than their place on the page, read only by scrolling sideways"
    # No cell reaches past the window's right edge: the audit column, the last, is read whole.
    assert measured["cells"] > 100
    assert measured["rightmost"] <= WIDTH
    assert measured["page"] <= WIDTH
