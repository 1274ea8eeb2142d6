"""Validation refuses prerequisite and segment chains longer than the bounds evaluation enforces
(MAX_PREREQUISITE_DEPTH, MAX_SEGMENT_DEPTH), so nothing the API accepts evaluates to ERROR for its
depth; the check is iterative and linear, so an environment of MAX_FLAGS_PER_ENVIRONMENT flags passes."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.rule_engine import (
    DefinitionError,
    Flag,
    Issue,
    limits,
    validate_document,
    validate_flag,
    validate_segment,
)

DEPTH = limits.MAX_PREREQUISITE_DEPTH
SEGMENT_DEPTH = limits.MAX_SEGMENT_DEPTH


def flag(key: str, *prerequisites: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "on",
        "prerequisites": [{"flag": p, "variant": "on"} for p in prerequisites],
    }


def chain(prefix: str, n: int, last_to: str | None = None) -> list[dict[str, Any]]:
    """prefix0 -> prefix1 -> … -> prefix(n-1) (-> ``last_to``)."""
    flags = [flag(f"{prefix}{i}", f"{prefix}{i + 1}") for i in range(n - 1)]
    flags.append(flag(f"{prefix}{n - 1}", *([last_to] if last_to else [])))
    return flags


def known(flags: list[dict[str, Any]]) -> dict[str, Flag]:
    return {f["key"]: Flag.model_validate(f) for f in flags}


def refused(call: Any) -> list[Issue]:
    with pytest.raises(DefinitionError) as caught:
        call()
    return caught.value.issues


# --- one flag against its environment ------------------------------------------------------------------


def test_validate_flag__chain_of_exactly_the_bound__is_accepted() -> None:
    validate_flag(flag("f0", "f1"), flags=known(chain("f", DEPTH)[1:]))


def test_validate_flag__chain_one_past_the_bound__is_refused_naming_the_chain() -> None:
    issues = refused(lambda: validate_flag(flag("f0", "f1"), flags=known(chain("f", DEPTH + 1)[1:])))

    assert issues == [
        Issue(
            "/prerequisites",
            f"prerequisite chain of {DEPTH + 1} flags through 'f0' is longer than the limit of {DEPTH} "
            f"(MAX_PREREQUISITE_DEPTH): f0 -> f1 -> f2 -> … -> f{DEPTH - 1} -> f{DEPTH}",
        )
    ]


@pytest.mark.parametrize(("below", "accepted"), [(DEPTH // 2, True), (DEPTH // 2 + 1, False)])
def test_validate_flag__chain_through_a_flag_in_the_middle__counts_its_dependents(
    below: int, accepted: bool
) -> None:
    """``mid`` has DEPTH/2 - 1 flags above it; giving it a chain of ``below`` flags makes a chain of
    DEPTH (accepted) or DEPTH + 1 (refused) through it, though its own chain is short."""
    above = chain("a", DEPTH // 2 - 1, last_to="mid")
    environment = known([*above, flag("mid"), *chain("b", below)])
    call = lambda: validate_flag(flag("mid", "b0"), flags=environment, path="/body")  # noqa: E731
    if accepted:
        call()
        return
    (issue,) = refused(call)
    assert issue.path == "/body/prerequisites"
    assert issue.message.startswith(f"prerequisite chain of {DEPTH + 1} flags through 'mid'")
    assert issue.message.endswith(f"a0 -> a1 -> a2 -> … -> b{below - 2} -> b{below - 1}")


# --- whole documents -----------------------------------------------------------------------------------


def test_validate_document__prerequisite_chain_of_exactly_the_bound__is_accepted() -> None:
    validate_document({"flags": chain("f", DEPTH)})


def test_validate_document__prerequisite_chain_one_past_the_bound__is_refused_at_its_head() -> None:
    flags = list(reversed(chain("f", DEPTH + 1)))  # f0, the head, is last

    issues = refused(lambda: validate_document({"flags": flags}))

    assert issues == [
        Issue(
            f"/flags/{DEPTH}/prerequisites",
            f"prerequisite chain of {DEPTH + 1} flags is longer than the limit of {DEPTH} "
            f"(MAX_PREREQUISITE_DEPTH): f0 -> f1 -> f2 -> … -> f{DEPTH - 1} -> f{DEPTH}",
        )
    ]


def test_validate_document__chain_of_every_flag_an_environment_holds__is_refused_without_recursing() -> None:
    n = limits.MAX_FLAGS_PER_ENVIRONMENT
    issues = refused(lambda: validate_document({"flags": chain("f", n)}))

    assert [i.path for i in issues] == ["/flags/0/prerequisites"]
    assert issues[0].message.startswith(f"prerequisite chain of {n} flags")


def wide_dag(layers: int, fan_out: int = 3) -> list[dict[str, Any]]:
    """MAX_FLAGS_PER_ENVIRONMENT flags in ``layers`` layers, each flag a dependent of ``fan_out`` flags
    of the next layer: every flag starts a chain of ``layers - its layer`` flags, many ways over."""
    width = limits.MAX_FLAGS_PER_ENVIRONMENT // layers
    flags = []
    for layer in range(layers):
        for i in range(width):
            below = [f"l{layer + 1}-{(i + k) % width}" for k in range(fan_out)] if layer + 1 < layers else []
            flags.append(flag(f"l{layer}-{i}", *below))
    return flags


def test_validate_document__wide_dag_of_an_environments_flags_at_the_bound__is_accepted() -> None:
    flags = wide_dag(DEPTH)
    assert len(flags) > limits.MAX_FLAGS_PER_ENVIRONMENT - DEPTH

    document = validate_document({"flags": flags})

    assert len(document.flags) == len(flags)


def test_validate_document__wide_dag_with_one_flag_above_the_bound__refuses_that_flag() -> None:
    flags = [*wide_dag(DEPTH), flag("top", "l0-7")]

    issues = refused(lambda: validate_document({"flags": flags}))

    assert [i.path for i in issues] == [f"/flags/{len(flags) - 1}/prerequisites"]
    assert issues[0].message.startswith(f"prerequisite chain of {DEPTH + 1} flags")
    assert issues[0].message.endswith(f"top -> l0-7 -> l1-7 -> … -> l{DEPTH - 2}-7 -> l{DEPTH - 1}-7")


# --- segments ------------------------------------------------------------------------------------------


def segments(n: int) -> list[dict[str, Any]]:
    """s0 -> s1 -> … -> s(n-1) by segment_match rules, listed last first."""
    made = [{"key": f"s{n - 1}", "included": ["u"]}]
    made += [
        {"key": f"s{i}", "rules": [{"clauses": [{"operator": "segment_match", "values": [f"s{i + 1}"]}]}]}
        for i in reversed(range(n - 1))
    ]
    return made


def test_validate_document__segment_chain_of_exactly_the_bound__is_accepted() -> None:
    validate_document({"segments": segments(SEGMENT_DEPTH)})


def test_validate_document__segment_chain_one_past_the_bound__is_refused_at_its_head() -> None:
    issues = refused(lambda: validate_document({"segments": segments(SEGMENT_DEPTH + 1)}))

    assert issues == [
        Issue(
            f"/segments/{SEGMENT_DEPTH}/rules",
            f"segment chain of {SEGMENT_DEPTH + 1} segments is longer than the limit of {SEGMENT_DEPTH} "
            f"(MAX_SEGMENT_DEPTH): s0 -> s1 -> s2 -> … -> s{SEGMENT_DEPTH - 1} -> s{SEGMENT_DEPTH}",
        )
    ]


def references(n: int) -> dict[str, list[str]]:
    """What segments s1 … s(n-1) of :func:`segments` refer to."""
    return {f"s{i}": [f"s{i + 1}"] if i + 1 < n else [] for i in range(1, n)}


def test_validate_segment__chain_of_exactly_the_bound_through_it__is_accepted() -> None:
    head = segments(SEGMENT_DEPTH)[-1]
    validate_segment(head, segments=references(SEGMENT_DEPTH), references=references(SEGMENT_DEPTH))


def test_validate_segment__chain_one_past_the_bound_through_it__is_refused() -> None:
    n = SEGMENT_DEPTH + 1
    head = segments(n)[-1]

    issues = refused(lambda: validate_segment(head, segments=references(n), references=references(n)))

    assert issues == [
        Issue(
            "/rules",
            f"segment chain of {n} segments through 's0' is longer than the limit of {SEGMENT_DEPTH} "
            f"(MAX_SEGMENT_DEPTH): s0 -> s1 -> s2 -> … -> s{SEGMENT_DEPTH - 1} -> s{SEGMENT_DEPTH}",
        )
    ]
