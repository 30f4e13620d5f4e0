"""The collector pause around building a run's large structures."""

from __future__ import annotations

import gc

import pytest

from keyplan.heap import collector_paused


def test_the_collector_is_paused_inside_and_restored_after_nested_pauses_and_errors() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner pause leaves the outer one paused
            raise RuntimeError("planning failed")
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
