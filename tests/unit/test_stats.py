"""Summary statistics and output comparison."""

from __future__ import annotations

import pytest

from bgcompiler.stats import Stats, describe, outputs_match


def test_describe_known_values() -> None:
    """Values checked by hand: 1..10."""
    stats = describe([float(v) for v in range(10, 0, -1)])
    assert stats is not None
    assert (stats.min, stats.median, stats.max) == (1.0, 5.5, 10.0)
    assert stats.mean == 5.5
    assert stats.p95 == pytest.approx(9.55)  # 1 + 0.95 * 9
    assert stats.stdev == pytest.approx(3.02765, abs=1e-5)
    assert stats.cv == pytest.approx(3.02765 / 5.5, abs=1e-5)


def test_describe_single_value_and_empty() -> None:
    """One value: no spread; no values: no statistics at all."""
    assert describe([7.0]) == Stats(
        min=7.0,
        median=7.0,
        mean=7.0,
        p95=7.0,
        max=7.0,
        stdev=0.0,
        cv=0.0,
    )
    assert describe([]) is None


@pytest.mark.parametrize(
    ("actual", "expected", "exact", "trim"),
    [
        (b"3\n", b"3\n", True, True),
        (b"3\n", b"3", False, True),
        (b"3  \n\n\n", b"3", False, True),
        (b"a \nb\t\n", b"a\nb", False, True),
        (b" 3\n", b"3\n", False, False),  # leading space matters
        (b"3\n\n4\n", b"3\n4\n", False, False),  # an inner blank line matters
        (b"\r\n", b"", False, True),
    ],
)
def test_compare_modes(actual: bytes, expected: bytes, exact: bool, trim: bool) -> None:
    """exact is byte for byte; trim forgives only trailing whitespace and blank lines."""
    assert outputs_match(actual, expected, "exact") is exact
    assert outputs_match(actual, expected, "trim") is trim
