"""``matches`` runs on RE2: hostile patterns are refused with a pointer or matched in linear time, and
where RE2's syntax overlaps Python's ``re`` a pattern means the same."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagyard.rule_engine import (
    DefinitionError,
    Reason,
    compile_flag,
    limits,
    validate_flag,
    validate_segment,
)
from flagyard.rule_engine.regex import check_pattern, compile_pattern, pattern_size

ISSUE_PATTERNS = [".*.*.*=", "(a?){28}a{28}", "a{0,1000}a{0,1000}a{0,1000}a{0,1000}b"]
"""The three patterns of the hardening issue that passed the old guard and took seconds to match."""


def flag_with(patterns: list[str], negate: bool = False) -> dict[str, Any]:
    return {
        "key": "f",
        "type": "boolean",
        "variants": {"yes": True, "no": False},
        "default_variant": "no",
        "rules": [
            {
                "id": "r",
                "clauses": [
                    {"attribute": "attr", "operator": "matches", "values": patterns, "negate": negate}
                ],
                "variant": "yes",
            }
        ],
    }


def evaluate(patterns: list[str], value: Any, negate: bool = False) -> bool:
    compiled = compile_flag(validate_flag(flag_with(patterns, negate)))
    result = compiled.evaluate({"attr": value}, _NO_STORE)
    assert result.error_code is None, result
    return result.reason is Reason.TARGETING_MATCH


class _Store:
    flags: dict[str, Any] = {}  # noqa: RUF012
    segments: dict[str, Any] = {}  # noqa: RUF012


_NO_STORE = _Store()


def closure_objects(fn: Any, seen: set[int] | None = None) -> list[Any]:
    """Every object reachable through the closure cells of ``fn`` and of the functions found there."""
    seen = set() if seen is None else seen
    found: list[Any] = []
    stack = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        found.append(obj)
        cells = getattr(obj, "__closure__", None) or ()
        stack += [c.cell_contents for c in cells if c.cell_contents is not None]
        if isinstance(obj, tuple | list):
            stack += list(obj)
    return found


def assert_runs_on_re2(evaluator: Callable[..., Any]) -> None:
    objects = closure_objects(evaluator)
    assert not [o for o in objects if isinstance(o, re.Pattern)], "a Python re pattern was compiled"
    engines = {type(getattr(o, "__self__", None)).__module__ for o in objects}
    assert "re2._re2" in engines, "no RE2 matcher in the compiled clause"


# --- the issue's attacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "miss"),
    [(ISSUE_PATTERNS[0], "a" * limits.MAX_SUBJECT_LENGTH), (ISSUE_PATTERNS[1], "a" * 27 + "b" * 997)],
)
def test_issue_pattern__accepted_by_re2__compiles_to_an_re2_matcher_and_answers_on_max_length_subjects(
    pattern: str, miss: str
) -> None:
    compiled = compile_flag(validate_flag(flag_with([pattern])))
    assert_runs_on_re2(compiled.evaluate)
    hit = "a" * (limits.MAX_SUBJECT_LENGTH - 1) + "="
    assert compiled.evaluate({"attr": hit}, _NO_STORE).reason is Reason.TARGETING_MATCH
    assert compiled.evaluate({"attr": miss}, _NO_STORE).reason is Reason.DEFAULT


def test_issue_pattern__stacked_counted_repeats__refused_as_too_complex_with_pointer() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flag(flag_with(["ok", ISSUE_PATTERNS[2]]))
    (issue,) = caught.value.issues
    assert issue.path == "/rules/0/clauses/0/values/1"
    assert "too complex" in issue.message
    assert f"the limit is {limits.MAX_PATTERN_PROGRAM_SIZE}" in issue.message


# --- limits -----------------------------------------------------------------------------------------------


def test_pattern_length__at_the_limit__accepted_and_one_more__refused() -> None:
    assert check_pattern("a" * limits.MAX_PATTERN_LENGTH) is None
    problem = check_pattern("a" * (limits.MAX_PATTERN_LENGTH + 1))
    assert problem == (
        f"pattern is {limits.MAX_PATTERN_LENGTH + 1} characters long; the limit is {limits.MAX_PATTERN_LENGTH}"
    )


def test_subject_length__at_the_limit__matches_and_one_more__never_does() -> None:
    at_limit = "x" * (limits.MAX_SUBJECT_LENGTH - 1) + "!"
    assert evaluate(["!$"], at_limit)
    assert not evaluate(["!$"], "x" + at_limit)
    assert evaluate(["!$", "^q"], at_limit)
    assert not evaluate(["!$", "^q"], "x" + at_limit)


def test_program_size__at_the_limit__accepted_and_past_it__refused() -> None:
    def size_problem(n: int) -> str | None:
        return check_pattern(f"(?:abc){{{n}}}")

    first_refused = next(n for n in range(1, 1001) if size_problem(n) is not None)
    assert first_refused > 1
    assert size_problem(first_refused - 1) is None
    message = size_problem(first_refused)
    assert message is not None
    assert "too complex" in message
    assert f"the limit is {limits.MAX_PATTERN_PROGRAM_SIZE}" in message


# --- RE2 is not Python's re: the differences that matter ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"end\Z", r"use \z for the end of the text"),
        (r"u-(?=42)", "lookahead is not supported"),
        (r"u-(?!42)", "lookahead is not supported"),
        (r"(?<=@)corp", "lookbehind is not supported"),
        (r"(?<!@)corp", "lookbehind is not supported"),
        (r"(a)\1", "backreferences are not supported"),
        (r"(?P<x>a)(?P=x)", "backreferences are not supported"),
        (r"a*+b", "possessive quantifiers are not supported"),
        (r"(?>a+)b", "atomic groups are not supported"),
        (r"caf\u00e9", r"write a code point as \x{00e9}"),
        (r"a{1001}", "a counted repeat is at most {1000}"),
        (r"(?x) a b", "verbose mode"),
        ("[unclosed", "missing ]"),
        ("a\ud800", "unpaired surrogate"),
    ],
)
def test_python_only_syntax__refused_with_re2s_message_and_a_hint(pattern: str, says: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flag(flag_with([pattern]))
    (issue,) = caught.value.issues
    assert issue.path == "/rules/0/clauses/0/values/0"
    assert says in issue.message


def test_refused_pattern__writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    for pattern in ["(?=a)", "[", r"\Z", "a{0,1000}" * 4]:
        assert check_pattern(pattern) is not None
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("pattern", "value", "re2_matches"),
    [
        (r"end\z", "the end", True),  # RE2's end of text
        (r"^u-\d+$", "u-42\n", False),  # Python's $ also matches before a final newline; RE2's does not
        (r"^\w+$", "José", False),  # \w, \d, \s and \b are ASCII in RE2
        (r"^\pL+$", "José", True),  # Unicode classes are spelled \pL, \p{Greek}
        (r"^\d+$", "١٢", False),  # Arabic-Indic digits are not \d
        (r"(?i)^JOSÉ$", "josé", True),  # case folding is Unicode in both
        (r"^(?P<user>[a-z]+)@corp$", "amy@corp", True),  # Python's named groups are accepted
        (r"^é.$", "éx", True),  # '.' is a character, not a byte
        (r"x", "a\ud800x", True),  # an unpaired surrogate in the attribute never raises
        (r"^a.b$", "a\ud800b", True),  # and is one character, as in Python
    ],
)
def test_re2_semantics__where_they_differ_from_python_re(pattern: str, value: str, re2_matches: bool) -> None:
    assert evaluate([pattern], value) is re2_matches


def test_matches__list_attribute_and_negation__use_re2_too() -> None:
    assert evaluate([r"^b"], ["a", "b"])
    assert not evaluate([r"^c"], ["a", "b"])
    assert evaluate([r"^c"], "a", negate=True)
    assert not evaluate([r"^a"], "a", negate=True)
    assert evaluate([r"^c", r"^a"], "a")


# --- property tests ------------------------------------------------------------------------------------------

_ATOMS = st.sampled_from(["a", "b", "[ab]", ".", r"\w", r"\d", "(?:a|ab)", "a?"])


@st.composite
def pathological_patterns(draw: st.DrawFn) -> str:
    """Nested quantifiers, alternation inside repeats, stacked counted repeats and long patterns."""
    atom = draw(_ATOMS)
    n = draw(st.integers(0, 1000))
    k = draw(st.integers(1, 8))
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return f"({atom}+)+" * k + draw(st.sampled_from(["$", "b", "="]))
    if shape == 1:
        return f"({atom}|{atom}{atom})*" * k + "c"
    if shape == 2:
        return f"{atom}{{0,{n}}}" * k + "b"
    if shape == 3:
        return f"({atom}?){{{n}}}{atom}{{{n}}}"
    if shape == 4:
        return ".*" * k * draw(st.integers(1, 40)) + "="
    if shape == 5:
        return f"(.*{atom}){{{n}}}"
    pieces = st.sampled_from(["a", "(", ")", "*", "+", "?", "|", "{2,9}", ".", "{0,1000}"])
    return "".join(draw(st.lists(pieces, max_size=300)))


_HOSTILE_SUBJECTS = ["a" * limits.MAX_SUBJECT_LENGTH, "a" * (limits.MAX_SUBJECT_LENGTH - 1) + "!"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=pathological_patterns())
def test_pathological_pattern__refused_with_pointer_or_compiled_to_re2(pattern: str) -> None:
    problem = check_pattern(pattern)
    if problem is not None:
        with pytest.raises(DefinitionError) as caught:
            validate_flag(flag_with([pattern]))
        assert [i.path for i in caught.value.issues] == ["/rules/0/clauses/0/values/0"]
        return
    compiled = compile_flag(validate_flag(flag_with([pattern])))
    assert_runs_on_re2(compiled.evaluate)
    for subject in _HOSTILE_SUBJECTS:
        assert compiled.evaluate({"attr": subject}, _NO_STORE).error_code is None


_SAFE_ATOMS = st.sampled_from(["a", "b", "c", "[ab]", "[^a]", ".", r"\d", r"\w", r"\s", "-", r"\.", "[0-2]"])


@st.composite
def overlapping_patterns(draw: st.DrawFn, depth: int = 0) -> str:
    """Patterns whose syntax both engines read the same way."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.booleans()):
            inner = draw(overlapping_patterns(depth + 1))
            body = (
                f"(?:{inner}|{draw(overlapping_patterns(depth + 1))})"
                if draw(st.booleans())
                else f"({inner})"
            )
            # Only bounded repeats of a group: an unbounded one around a quantified group makes Python's
            # re, the reference here, backtrack exponentially.
            body += draw(st.sampled_from(["", "", "?", "{2}", "{0,2}"]))
        else:
            body = draw(_SAFE_ATOMS) + draw(
                st.sampled_from(["", "", "?", "*", "+", "{2}", "{1,3}", "*?", "+?"])
            )
        parts.append(body)
    pattern = "".join(parts)
    if depth == 0:
        pattern = draw(st.sampled_from(["", "^"])) + pattern + draw(st.sampled_from(["", "$"]))
        if draw(st.booleans()):
            pattern = "(?i)" + pattern
    return pattern


@settings(max_examples=400, deadline=None)
@given(pattern=overlapping_patterns(), subject=st.text(st.sampled_from("abcAB012 -._\t"), max_size=12))
def test_overlapping_syntax__re2_and_python_re_agree_on_match(pattern: str, subject: str) -> None:
    assert check_pattern(pattern) is None
    assert compile_pattern(pattern)(subject) is (re.search(pattern, subject) is not None)


# --- all patterns of one definition ---------------------------------------------------------------------------


def sized_pattern(size: int) -> str:
    """A pattern whose RE2 program has exactly ``size`` instructions."""
    pattern = f"a{{{size - 4}}}"
    assert pattern_size(pattern) == size
    return pattern


def budget_sizes(total: int) -> list[int]:
    count = -(-limits.MAX_PATTERN_PROGRAM_TOTAL // 1000)
    sizes = [total // count] * count
    sizes[-1] += total - sum(sizes)
    return sizes


def test_pattern_total__flag_at_the_limit__accepted_and_past_it__refused_at_the_crossing_pattern() -> None:
    def flag(total: int) -> dict[str, Any]:
        data = flag_with(["x"])
        data["rules"] = [
            {
                **data["rules"][0],
                "id": f"r{i}",
                "clauses": [{"attribute": "a", "operator": "matches", "values": [p]}],
            }
            for i, p in enumerate(sized_pattern(s) for s in budget_sizes(total))
        ]
        return data

    validate_flag(flag(limits.MAX_PATTERN_PROGRAM_TOTAL))
    past = flag(limits.MAX_PATTERN_PROGRAM_TOTAL + 1)
    with pytest.raises(DefinitionError) as caught:
        validate_flag(past)
    (issue,) = caught.value.issues
    assert issue.path == f"/rules/{len(past['rules']) - 1}/clauses/0/values/0"
    assert f"compile to {limits.MAX_PATTERN_PROGRAM_TOTAL + 1} RE2 instructions in all" in issue.message
    assert "MAX_PATTERN_PROGRAM_TOTAL" in issue.message


def test_pattern_total__segment_past_the_limit__refused_with_pointer() -> None:
    patterns = [sized_pattern(s) for s in budget_sizes(limits.MAX_PATTERN_PROGRAM_TOTAL + 1)]
    rules = [{"clauses": [{"attribute": "a", "operator": "matches", "values": patterns}]}]
    with pytest.raises(DefinitionError) as caught:
        validate_segment({"key": "s", "rules": rules})
    (issue,) = caught.value.issues
    assert issue.path == f"/rules/0/clauses/0/values/{len(patterns) - 1}"
    assert validate_segment(
        {"key": "s", "rules": [{"clauses": [{**rules[0]["clauses"][0], "values": patterns[:-1]}]}]}
    )


def test_memo__many_patterns_and_subjects__stays_within_its_bound_and_answers_right() -> None:
    from flagyard.rule_engine import regex

    searches = [regex.compile_pattern(f"^u-{i}-[0-9]+$") for i in range(50)]
    for n in range(200):
        for i, search in enumerate(searches):
            assert search(f"u-{i}-{n}") is True
            assert search(f"u-{i + 1}-{n}x") is False
    assert 0 < len(regex._memo) <= regex._MEMO_ENTRIES
    long_subject = "u-0-" + "1" * regex._MEMO_SUBJECT_LENGTH
    regex._memo.clear()
    assert searches[0](long_subject) is True
    assert regex._memo == {}


def test_compiled_program__same_pattern_in_many_clauses__shared_and_dropped_with_its_last_user() -> None:
    import gc

    from flagyard.rule_engine import regex

    pattern = "^shared-[0-9]{3}$"
    first, second = regex.compile_pattern(pattern), regex.compile_pattern(pattern)
    assert first("shared-123")
    assert second("shared-456")
    assert not first("shared-12")
    assert first.__defaults__ is not None
    assert second.__defaults__ is not None
    assert first.__defaults__[0] is second.__defaults__[0] is regex._compiled[pattern]
    assert first is second
    del first, second
    gc.collect()
    assert pattern not in regex._compiled
