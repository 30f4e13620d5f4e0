"""The call limiter's arithmetic on a fake clock: pacing at the declared rate, AIMD on throttling,
Retry-After honoured, throttled calls waited out, reads retried, the throttle timeout."""

from __future__ import annotations

import pytest

from keyplan.limits import CallLimits, Clock, NotSent, RateClass, TargetLimits, Throttled, apply_overrides, begin_step


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class Refused(Exception):
    def __init__(self, *, throttle: float | bool = False, retryable: bool = False) -> None:
        super().__init__("refused")
        self.throttle = throttle
        self.retryable = retryable


def limits(clock: FakeClock, per_second: float = 5, *, paced: bool = True, timeout: float = 60) -> TargetLimits:
    create = RateClass(name="CreateKey", per_second=per_second, operations=("CreateKey",), scope="s", source="t")
    return TargetLimits("aws.main", [create], timeout, Clock(clock.now, clock.sleep), paced=lambda c: paced)


def send_through(target: TargetLimits, answers: list[object], *, read: bool = False) -> object:
    pending = list(answers)

    def send() -> object:
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return target.call(
        "CreateKey",
        send,
        read=read,
        throttling=lambda e: e.throttle if isinstance(e, Refused) else False,
        retryable=lambda e: isinstance(e, Refused) and e.retryable,
    )


def test_calls_are_paced_at_the_declared_rate_after_the_burst() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=5)
    start = clock.t
    for _ in range(25):
        send_through(target, ["ok"])
    # two and a half go at once (half a second's worth: the cloud's own burst keeps slack for
    # calls that reach it bunched up), the others at 5/s
    assert clock.t - start == pytest.approx((25 - 2.5) / 5, abs=0.01)
    assert target.limiter("CreateKey").stats.calls == 25  # type: ignore[union-attr]


def test_a_throttled_call_is_waited_out_and_halves_the_rate() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=4)
    assert send_through(target, [Refused(throttle=True), Refused(throttle=True), "created"]) == "created"
    limiter = target.limiter("CreateKey")
    assert limiter is not None
    assert limiter.stats.throttled == 2
    assert limiter.rate == pytest.approx(1.0 + 4 * 0.05)  # 4 -> 2 -> 1, then one success adds 5 %


def test_calls_in_flight_throttled_together_halve_the_rate_once() -> None:
    """One throttling event, one decrease: calls sent before the rate was halved were in flight
    at the old rate, so their throttling answers say nothing new (16 of them had divided the rate
    by 2^16, down to its floor, and it climbs back 5 % of the declared rate per success). A call
    sent after the decrease and throttled again halves it again."""
    clock = FakeClock()
    target = limits(clock, per_second=8)
    limiter = target.limiter("CreateKey")
    assert limiter is not None
    sent_together = clock.t
    clock.t += 0.02  # their answers come back
    for _ in range(16):
        limiter.throttled(None, sent_together)
    assert limiter.rate == pytest.approx(4.0)
    assert limiter.stats.throttled == 16
    clock.t += 1.0
    limiter.throttled(None, clock.t - 0.02)  # sent after the decrease, at the halved rate
    assert limiter.rate == pytest.approx(2.0)


def test_retry_after_holds_every_caller_of_the_class() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=100)
    start = clock.t
    send_through(target, [Refused(throttle=7.5), "ok"])
    assert clock.t - start >= 7.5


def test_an_unpaced_class_sends_freely_until_throttled_then_paces_at_half_the_measured_rate() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=5, paced=False)
    for _ in range(40):
        send_through(target, ["ok"])
    assert clock.slept == []  # no pacing before the endpoint says no
    send_through(target, [Refused(throttle=True), "ok"])
    limiter = target.limiter("CreateKey")
    assert limiter is not None and limiter.rate is not None
    assert 20 <= limiter.rate <= 25  # 41 admitted in the last second, halved, plus one increase


def test_throttling_without_progress_for_the_timeout_stops() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=1, timeout=30)
    with pytest.raises(Throttled) as stopped:
        send_through(target, [Refused(throttle=10.0)] * 10)
    assert stopped.value.rate_class == "CreateKey"
    assert stopped.value.waited >= 30


def test_a_retry_after_beyond_the_timeout_is_held_only_until_the_timeout() -> None:
    clock = FakeClock()
    target = limits(clock, timeout=60)
    start = clock.t
    with pytest.raises(Throttled):
        send_through(target, [Refused(throttle=86400.0)] * 10)
    assert clock.t - start < 61  # stopped at the timeout, not a day later


def test_throttling_without_retry_after_is_not_waited_past_the_timeout() -> None:
    # Each throttling answer halves the rate, and the wait for a token at the halved rate
    # (0.4 s, 0.8 s, 1.6 s, then 3.2 s at 5 calls a second) would reach past the timeout: the
    # last wait ends at the timeout and the next answer stops the call.
    clock = FakeClock()
    target = limits(clock, per_second=5, timeout=3)
    with pytest.raises(Throttled) as stopped:
        send_through(target, [Refused(throttle=True)] * 10)
    assert stopped.value.waited == pytest.approx(3.0)
    assert sum(clock.slept) == pytest.approx(3.0)


def test_the_timeout_counts_from_the_first_throttling_answer_not_from_the_class_being_idle() -> None:
    # A class unused for longer than the timeout (its calls come late in a long apply) is not
    # stopped by its first throttling answer.
    clock = FakeClock()
    target = limits(clock, per_second=100, timeout=60)
    clock.t += 3600
    assert send_through(target, [Refused(throttle=True), "created"]) == "created"
    assert send_through(target, ["ok"]) == "ok"
    clock.t += 3600
    assert send_through(target, [Refused(throttle=1.0), "created"]) == "created"


def test_reads_are_retried_with_backoff_and_writes_are_not() -> None:
    clock = FakeClock()
    target = limits(clock, per_second=100)
    assert send_through(target, [Refused(retryable=True), Refused(retryable=True), "listed"], read=True) == "listed"
    with pytest.raises(Refused):
        send_through(target, [Refused(retryable=True), "never"], read=False)


def test_overrides_replace_the_declared_rate_and_the_run_summary_lists_waits() -> None:
    declared = RateClass(name="write", per_second=1, operations=("create",), scope="project", source="q")
    (overridden,) = apply_overrides([declared], {"write": 10})
    assert overridden.per_second == 10
    clock = FakeClock()
    run = CallLimits(clock=Clock(clock.now, clock.sleep))
    target = run.target("gcp.main", [declared])
    for _ in range(4):
        target.call("create", lambda: None, read=False, throttling=lambda e: False, retryable=lambda e: False)
    ((address, rate_class, stats),) = run.waits()
    assert (address, rate_class.name, stats.calls) == ("gcp.main", "write", 4)
    assert stats.waited_seconds == pytest.approx(3.0)


def test_a_stop_ends_the_wait_for_a_turn_and_the_call_is_not_sent() -> None:
    clock = FakeClock()
    run = CallLimits(throttle_timeout=60, clock=Clock(clock.now, clock.sleep))
    create = RateClass(name="CreateKey", per_second=1, operations=("CreateKey",), scope="s", source="t")
    target = run.target("aws.main", [create])
    sent: list[str] = []

    def call() -> object:
        return target.call("CreateKey", lambda: sent.append("sent"), read=False, throttling=lambda e: False,
                           retryable=lambda e: False)  # fmt: skip

    begin_step()
    call()  # the burst: sent at once
    run.stop()
    call()  # the same step, already in flight (a creation adding its alias): it waits its turn
    assert sent == ["sent", "sent"] and clock.slept
    begin_step()
    with pytest.raises(NotSent):
        call()  # a new step would have waited for a token before sending anything
    assert len(sent) == 2


def test_a_step_whose_only_call_was_throttled_gives_up_at_a_stop() -> None:
    # A throttling answer means the cloud did nothing: the step has still sent nothing, so a stop
    # ends its wait for a turn instead of holding the interrupt until the throttle timeout.
    clock = FakeClock()
    run = CallLimits(throttle_timeout=1800, clock=Clock(clock.now, clock.sleep))
    create = RateClass(name="CreateKey", per_second=1, operations=("CreateKey",), scope="s", source="t")
    target = run.target("aws.main", [create])
    sent: list[str] = []

    def send() -> object:
        sent.append("sent")
        raise Refused(throttle=True)

    def throttling(error: BaseException) -> float | bool:
        run.stop()  # the interrupt arrives while the cloud throttles
        return error.throttle if isinstance(error, Refused) else False

    begin_step()
    with pytest.raises(NotSent):
        target.call("CreateKey", send, read=False, throttling=throttling, retryable=lambda e: False)
    assert sent == ["sent"]
    assert sum(clock.slept) < 60


@pytest.mark.parametrize("retry_after", [True, 5.0, 1e308, float("inf")])
def test_an_operation_no_class_covers_stops_at_the_throttle_timeout(retry_after: float | bool) -> None:
    # A proof's cryptographic call (no rate class covers it) throttled forever: it stops at the
    # timeout like a class would, whatever Retry-After the cloud gave, never sleeping past it.
    clock = FakeClock()
    target = limits(clock, timeout=30)
    start = clock.t

    def send() -> object:
        raise Refused(throttle=retry_after)

    with pytest.raises(Throttled) as stopped:
        target.call(
            "GenerateMac",
            send,
            read=False,
            throttling=lambda e: e.throttle if isinstance(e, Refused) else False,
            retryable=lambda e: False,
        )
    assert (stopped.value.rate_class, stopped.value.classed) == ("GenerateMac", False)
    assert 30 <= clock.t - start <= 31
