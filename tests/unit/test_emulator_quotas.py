"""The realistic profile's buckets: a class's quota (times the scale) per window, then the wait."""

from __future__ import annotations

import pytest

from keyplan.limits import RateClass
from providers.emulation.quotas import QuotaEnforcer


def test_a_class_allows_its_window_of_calls_then_says_how_long_to_wait() -> None:
    t = [0.0]
    create = RateClass(name="create", per_second=1, operations=("ImportKey", "CreateKey"), scope="v", source="s")
    quotas = QuotaEnforcer([create], scale=1, window=10, now=lambda: t[0])
    assert all(quotas.admit("ImportKey") is None for _ in range(10))  # 10 per 10 s
    assert quotas.admit("CreateKey") == pytest.approx(1.0)  # the class is shared by its operations
    assert quotas.admit("GetKey") is None  # not a limited operation
    t[0] = 1.0
    assert quotas.admit("CreateKey") is None
    assert quotas.throttled == {"create": 1}


def test_the_scale_multiplies_the_quota() -> None:
    t = [0.0]
    read = RateClass(name="read", per_second=5, operations=("ListKeys",), scope="a", source="s")
    quotas = QuotaEnforcer([read], scale=4, now=lambda: t[0])
    assert sum(quotas.admit("ListKeys") is None for _ in range(30)) == 20
