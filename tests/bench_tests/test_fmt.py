"""bench.fmt: one way to print a number, wherever kdbench prints one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import fmt
from bench.report.tables import html_table, markdown_table


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0116, "0.01160"),
        (0.01142, "0.01142"),
        (221_000.0, "221,000"),
        (4620.69, "4,621"),
        (np.float32(0.5), "0.5000"),
        (np.int64(1154), "1,154"),
        (math.nan, "n/a"),
        (None, "n/a"),
        (pd.NA, "n/a"),
    ],
)
def test_a_table_cell_has_four_significant_digits_and_no_exponent(value, text) -> None:
    assert fmt.cell(value) == text


def test_units_in_a_column_name_choose_the_format() -> None:
    assert fmt.cell(98.6234, "student acc %") == "98.62"
    assert fmt.cell(0.18, "gap pp [95 %]") == "0.18"
    assert fmt.cell(0.081734, "CPU b1 p50 ms") == "0.0817"


def test_fractions_latencies_counts_and_ratios() -> None:
    assert fmt.pct(0.98623) == "98.62" and fmt.pct(0.0015, signed=True) == "+0.15"
    assert fmt.interval(-0.0008, 0.0046, signed=True) == "[-0.08, +0.46]"
    assert fmt.interval(math.nan, 0.1) == "n/a"
    assert (fmt.ms(0.0817), fmt.ms(1.0612), fmt.ms(12.34)) == ("0.0817 ms", "1.06 ms", "12.3 ms")
    assert fmt.ms(math.nan, "not measured") == "not measured"
    assert fmt.count(1154.0) == "1,154" and fmt.count(None) == "n/a"
    assert fmt.ratio(1 / 202.2) == "1/202.2" and fmt.ratio(2.8) == "2.8 times the size"
    assert fmt.ratio(math.nan).startswith("n/a")


def test_report_tables_print_no_nan_and_no_exponent() -> None:
    frame = pd.DataFrame(
        {"model": ["a", "b"], "flops": [221_000.0, 4620.69], "GPU b1 p50 ms": [math.nan, 0.05]}
    )
    for text in (markdown_table(frame), html_table(frame)):
        assert "NaN" not in text and "nan" not in text and "e+" not in text
        assert "221,000" in text and "4,621" in text and "n/a" in text


def test_settings_ratios_and_tolerances() -> None:
    assert fmt.fixed(1.8) == "1.80" and fmt.fixed(0.1234, 3) == "0.123"
    assert fmt.times(3.64) == "3.6×"
    # a tolerance reads as typed, whatever the float arithmetic did to it
    assert fmt.tolerance(0.005) == "0.5" and fmt.tolerance(0.003) == "0.3"
    assert fmt.tolerance(0.3 / 100) == "0.3" and fmt.tolerance(0.0048) == "0.48"
    # a level keeps every digit: alpha shared across rounds halves, 0.0125 is not 0.013
    assert [fmt.level(0.05 / 2**k) for k in range(4)] == ["0.05", "0.025", "0.0125", "0.00625"]
    assert fmt.level(0.05 * 3 / 3) == "0.05"
    # a Bonferroni share (0.025 over 3 scratch twins) in four significant digits, not eight
    assert fmt.level(0.025 / 3) == "0.008333"
    for f in (fmt.fixed, fmt.times, fmt.tolerance, fmt.level):
        assert f(float("nan")) == fmt.MISSING and f(None) == fmt.MISSING
