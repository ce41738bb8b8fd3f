"""The HTML report in a real browser (headless Chromium, Debian's ``chromium``): it must not
scroll sideways on a phone (420 px) or on a desktop (1400 px). Skips when no Chromium is
installed; CI installs it (.ci/run)."""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from tests.bench_tests.conftest import TINY_SUITE, with_certify

BROWSER = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)"),
]

# The page under test in an iframe of the given width: the iframe is the viewport the report
# lays out in (headless windows have a minimum width above a phone's).
FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>probe</title></head>
<body style="margin:0"><iframe id="f" src="report.html" style="width:{w}px;height:900px;border:0">
</iframe><script>
document.getElementById("f").addEventListener("load", function () {{
  var d = this.contentDocument.documentElement;
  document.title = "W=" + d.scrollWidth + " V=" + this.contentWindow.innerWidth;
}});
</script></body></html>"""


def page_width(report: Path, width: int) -> tuple[int, int]:
    """(the page's scroll width, the viewport width) of ``report`` laid out ``width`` px wide."""
    probe = report.parent / f"probe-{width}.html"
    probe.write_text(FRAME.format(w=width))
    out = subprocess.run(
        [
            str(BROWSER), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--allow-file-access-from-files", f"--window-size={width + 100},1000",
            "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r"<title>W=(\d+) V=(\d+)</title>", out.stdout)
    assert found, out.stderr[-2000:]
    return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    suite = tmp / "tiny.toml"
    suite.write_text(with_certify(TINY_SUITE, "candidates = 2\nseeds = 2\nmax_gap_pp = 100\n"))
    args = ["--out", str(tmp / "r"), "--reports", str(tmp / "p"), "--cache", str(tmp / "c"), "-q"]
    assert main(["run", str(suite), *args]) in (0, 1)
    (page,) = (tmp / "p").glob("*/report.html")
    return page


@pytest.mark.parametrize("width", [420, 1400])
def test_the_report_does_not_scroll_sideways(report: Path, width: int) -> None:
    scroll, viewport = page_width(report, width)
    assert viewport == width and scroll <= viewport, f"{scroll} px of content in {viewport} px"


def test_the_report_is_made_for_small_screens_and_sharp_ones(report: Path) -> None:
    html = report.read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert ".warn {" in html and "`" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    assert re.search(r'<div class="scroll"><table', html)
    assert "NaN" not in re.sub(r'src="data:image/png;base64,[^"]+"', "", html)
    assert "n/a" in html  # a CPU machine's GPU columns, said in words
    # text cells stay left-aligned; only numbers get the right-aligned class
    assert re.search(r"<td>[A-Za-z][^<]{3,}</td>", html)
    assert not re.search(r'<td class="num"[^>]*>[A-Za-z]', html)
    # every plot is stored at twice the width it is shown at
    figures = re.findall(
        r'<img alt="[^"]*" width="(\d+)" src="data:image/png;base64,([^"]+)"', html
    )
    assert figures
    for shown, b64 in figures:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", png[16:20])[0] >= 2 * int(shown) - 2
