"""formats/bounds.py: the value bound is an upper bound counted on raw bytes, exact for
bodies without punctuation in strings; the depth bound is exact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats import InvalidRequest
from formats.bounds import RequestTooLarge, depth_check, values_check, values_upper_bound


def _values(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_values(v) for v in value)
    return 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=5), c, max_size=5),
    max_leaves=40,
)


@given(json_values)
def test_value_count_is_an_upper_bound(value: Any) -> None:
    assert values_upper_bound(orjson.dumps(value)) >= _values(value)


@given(json_values)
def test_value_count_is_exact_without_punctuation_in_strings_or_empty_containers(value: Any) -> None:
    raw = orjson.dumps(value)
    if b"[]" not in raw and b"{}" not in raw and all(ch not in s for s in _strings(value) for ch in ",[{"):
        assert values_upper_bound(raw) == _values(value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value.keys(), *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_values_check_refuses_one_past_the_bound() -> None:
    values_check(b"[" + b",".join([b"0"] * 99) + b"]", max_values=100)  # the array and 99 items
    with pytest.raises(RequestTooLarge):
        values_check(b"[" + b",".join([b"0"] * 100) + b"]", max_values=100)


def _nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("max_depth", [1, 5, 100, 200])
def test_depth_check_is_exact(max_depth: int) -> None:
    depth_check(_nested(max_depth), max_depth=max_depth)
    with pytest.raises(InvalidRequest, match=f"more than {max_depth} levels"):
        depth_check(_nested(max_depth + 1), max_depth=max_depth)


def test_depth_check_skips_bodies_with_few_brackets() -> None:
    raw = b'{"a":[1,2]}'
    depth_check(orjson.loads(raw), raw, max_depth=2)  # exactly at the bound
    with pytest.raises(InvalidRequest):
        depth_check(orjson.loads(raw), raw, max_depth=1)
