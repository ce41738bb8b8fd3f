"""The report document: Markdown and self-contained HTML written side by side.

The HTML embeds its images as base64 data URIs and its style and sort script inline, so
nothing references an external resource.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from bench.durable.rundir import atomic_write_bytes, atomic_write_text, inside
from bench.report import tables

__all__ = ["Document"]

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, idx) {
  th.style.cursor = 'pointer';
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function (a, b) {
      var x = a.cells[idx], y = b.cells[idx];
      var vx = x.dataset.v !== undefined ? parseFloat(x.dataset.v) : x.textContent;
      var vy = y.dataset.v !== undefined ? parseFloat(y.dataset.v) : y.textContent;
      if (vx < vy) return asc ? -1 : 1; if (vx > vy) return asc ? 1 : -1; return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; line-height: 1.45; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; overflow-wrap: normal; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5em 0; }
figure { margin: 0; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; font-size: 0.92em; }
.rec { background: #eef6ee; border-left: 4px solid #2ca02c; padding: 0.6em 1em; white-space: pre-wrap; }
.norec { background: #fbeeee; border-left: 4px solid #d62728; padding: 0.6em 1em; white-space: pre-wrap; }
.warn { background: #fff8e1; border-left: 4px solid #f0a500; padding: 0.4em 1em; }
.headline { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 0.4em 0 0.8em; }
.fig { flex: 1 1 11em; min-width: 0; background: #f4f6f8; border-radius: 6px;
       padding: 0.5em 0.8em; }
.headline.met .fig { border-top: 4px solid #2ca02c; }
.headline.unmet .fig { border-top: 4px solid #d62728; }
.fig .l { font-size: 0.75em; text-transform: uppercase; letter-spacing: 0.05em; color: #555; }
.fig .v { font-size: 1.55em; font-weight: 600; line-height: 1.25; margin: 0.1em 0; }
.fig .n { font-size: 0.8em; color: #555; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; }
"""
DPI_SCALE = 2  # plots are saved at twice their display density: sharp on high-density screens


def _inline(text: str) -> str:
    """Escaped text with Markdown code spans (`x`) as <code>, so no backtick is printed."""
    parts = html.escape(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: print the text as it is
        return html.escape(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


class Document:
    """Writes the Markdown and the HTML twins side by side."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{_inline(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        self.md.append(text + "\n")
        attr = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{attr}>{_inline(text)}</p>")

    def headline(self, figures: list[tuple[str, str, str]], cls: str) -> None:
        """A row of large figures (label, value, small print) that wraps on a narrow screen;
        in Markdown, a bold line per figure."""
        self.md.append(
            "\n".join(
                f"- **{label}: {value}** — {note}" if value else f"- **{label}:** {note}"
                for label, value, note in figures
            )
            + "\n"
        )
        cards = "".join(
            f'<div class="fig"><div class="l">{_inline(label)}</div>'
            + (f'<div class="v">{_inline(value)}</div>' if value else "")
            + f'<div class="n">{_inline(note)}</div></div>'
            for label, value, note in figures
        )
        self.html.append(f'<div class="headline {cls}">{cards}</div>')

    def pre(self, text: str) -> None:
        self.md.append("```\n" + text + "\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, frame: pd.DataFrame, sortable: bool = False) -> None:
        self.md.append(tables.markdown_table(frame))
        self.html.append(f'<div class="scroll">{tables.html_table(frame, sortable)}</div>')

    def figure(self, fig: Any, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=fig.dpi * DPI_SCALE)
        png = buf.getvalue()
        atomic_write_bytes(inside(self.out_dir, name), png)
        self.md.append(f"![{caption}]({name})\n\n_{caption}_\n")
        b64 = base64.b64encode(png).decode()
        width = round(fig.get_figwidth() * fig.dpi)  # CSS pixels: the PNG has DPI_SCALE x that
        self.html.append(
            f'<figure><img alt="{html.escape(caption)}" width="{width}" '
            f'src="data:image/png;base64,{b64}">'
            f"<figcaption>{_inline(caption)}</figcaption></figure>"
        )

    def write(self, title: str) -> None:
        atomic_write_text(self.out_dir / "report.md", "\n".join(self.md))
        page = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(self.html)}<script>{_SORT_JS}</script></body></html>"
        )
        atomic_write_text(self.out_dir / "report.html", page)
