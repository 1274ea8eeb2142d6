"""The regex guard rejects what backtracks catastrophically and accepts ordinary patterns."""

from __future__ import annotations

import pytest

from flagyard.rule_engine.regex_guard import MAX_PATTERN_LENGTH, check_pattern


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[\w.+-]+@example\.com$",
        r"^u-\d{1,6}$",
        r"(?i)^(?:beta|alpha)-tester$",
        r"\.(de|at|ch)$",
        r"^[a-z]+-[0-9]+-[a-z]+$",
        r"(ab){3}",
        r"^(a|b)*c$",
    ],
)
def test_check_pattern__ordinary_pattern__is_accepted(pattern: str) -> None:
    assert check_pattern(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)+$", "nested quantifier"),
        (r"(a*)*b", "nested quantifier"),
        (r"^(\w+\s?)*$", "nested quantifier"),
        (r"(a{1,5}){2,}", "nested quantifier"),
        (r"(a|aa)+$", "alternation inside a repeated group"),
        (r"(x|xy)*z", "alternation inside a repeated group"),
        (r"(\w)\1", "backreferences"),
        (r"a.*b.*c.*d.*e.*f.*g.*", "unbounded quantifiers"),
        ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
        (r"(unclosed", "invalid regular expression"),
    ],
)
def test_check_pattern__dangerous_or_invalid__is_rejected_with_reason(pattern: str, why: str) -> None:
    problem = check_pattern(pattern)
    assert problem is not None
    assert why in problem
