"""`jaxperf report`'s page as a person sees it: rendered by headless Chromium into a screenshot.

Chromium is no Python dependency: where none is installed (``apt-get install chromium``) this test is
skipped and says so; the page's structure (self-contained, one image per plot) is checked without a browser
in test_cli_units.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pytest_jaxperf import cli, plots

from .test_cli_units import report_records, write_results

BROWSER = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
    None,
)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on this machine (apt-get install chromium)")
@pytest.mark.skipif(not plots.available(), reason="matplotlib (the 'report' extra) is not installed")
def test_the_page_renders_with_its_plots(tmp_path: Path):
    from PIL import Image  # matplotlib's own dependency

    results = write_results(tmp_path / "results.json", report_records())
    page = tmp_path / "report.html"
    assert cli.main(["report", str(results), "-o", str(page), "--no-history"]) == cli.EXIT_OK
    screenshot = tmp_path / "page.png"
    assert BROWSER is not None
    subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,4000", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1400, 4000)
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
    top = image.crop((0, 0, 1400, 200)).getcolors(maxcolors=1 << 20)
    assert top is not None
    assert len(top) > 10
