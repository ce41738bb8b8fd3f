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
# lays out in (headless windows have a minimum width above a phone's). The title reports the
# page's scroll width, the viewport's width, and where the headline's figures lie.
FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>probe</title></head>
<body style="margin:0"><iframe id="f" src="report.html" style="width:{w}px;height:900px;border:0">
</iframe><script>
document.getElementById("f").addEventListener("load", function () {{
  var doc = this.contentDocument, d = doc.documentElement;
  var figs = doc.querySelectorAll(".headline .fig"), bottom = 0, big = 1000;
  figs.forEach(function (f) {{ bottom = Math.max(bottom, f.getBoundingClientRect().bottom); }});
  doc.querySelectorAll(".headline .fig .v").forEach(function (v) {{
    big = Math.min(big, parseFloat(getComputedStyle(v).fontSize)); }});
  var para = doc.querySelector("p.rec, p.norec");
  var first = figs.length && para &&
    (figs[0].compareDocumentPosition(para) & Node.DOCUMENT_POSITION_FOLLOWING) ? 1 : 0;
  document.title = "W=" + d.scrollWidth + " V=" + this.contentWindow.innerWidth +
    " F=" + figs.length + " B=" + Math.round(bottom) + " S=" + Math.round(big) + " P=" + first;
}});
</script></body></html>"""


def probe(report: Path, width: int) -> dict[str, int]:
    """The report laid out ``width`` px wide: its scroll width ``W``, the viewport ``V``, the
    headline's figures ``F``, their bottom edge ``B`` (px from the top), the smallest figure's
    font size ``S`` (px), and ``P`` = 1 when the full sentence follows the figures."""
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
    found = re.search(r"<title>(W=\d+ V=\d+ F=\d+ B=\d+ S=\d+ P=\d)</title>", out.stdout)
    assert found, out.stderr[-2000:]
    return {k: int(v) for k, v in (kv.split("=") for kv in found[1].split())}


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
    seen = probe(report, width)
    assert seen["V"] == width and seen["W"] <= seen["V"], f"{seen['W']} px in {seen['V']} px"


@pytest.mark.parametrize("width", [420, 1400])
def test_the_answer_is_on_the_first_screen_in_large_figures(report: Path, width: int) -> None:
    """Read in five seconds: the headline's figures (the student, its size, its speed-up, the
    certified bound, the verdict) all lie within the first 900 px, larger than the body text,
    with the full sentence below them — on a phone too."""
    seen = probe(report, width)
    assert seen["F"] >= 4
    assert 0 < seen["B"] <= 900, f"the headline ends {seen['B']} px down at {width} px"
    assert seen["S"] >= 20
    assert seen["P"] == 1


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
