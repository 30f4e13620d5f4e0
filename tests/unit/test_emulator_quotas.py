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


def test_a_weighted_call_spends_its_cost_and_a_refused_one_nothing() -> None:
    t = [0.0]
    other = RateClass(name="other", per_second=400, operations=("GetKey",), scope="v", source="s")
    quotas = QuotaEnforcer([other], scale=0.01, window=10, now=lambda: t[0])  # 40 units, 4 a second
    assert quotas.admit("GetKey", 16) is None
    assert quotas.admit("GetKey", 16) is None
    assert quotas.admit("GetKey", 16) == pytest.approx(2.0)  # 8 units left: 8 more take 2 s
    assert quotas.spent == {"other": 32}
    assert quotas.admit("GetKey", 2) is None  # the refusal took nothing
    assert quotas.admit("GetKey", 1000) == pytest.approx(34 / 4)  # dearer than the bucket: a full bucket
