"""Reports: tables (pandas), plots (matplotlib, data + draw layers), render (md + html)."""

from __future__ import annotations

from bench.report.render import build_report

__all__ = ["build_report"]
