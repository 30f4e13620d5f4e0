"""Staying under the clouds' request quotas: one limiter per provider block and operation class.

Each provider declares its operation classes and their documented default rates (`RateClass`,
see docs/quotas.md); a user may override a rate per provider block (`rate_limits`). Every
remote call a provider makes is admitted through `TargetLimits.call`, which

- waits for a token of the call's class (a token bucket refilled at the class's current rate);
- on a throttling answer (a `ProviderError` with `throttled` set), halves the class's rate
  (multiplicative decrease, as adaptive SDK retry modes do), holds every caller of the
  class back for the cloud's `Retry-After` when it gave one, and sends the call again: a
  throttled call is waited out, never reported, until `throttle_timeout` passes without one
  call of the class succeeding since its first throttling answer; no wait (for a token at the
  lowered rate, or for a Retry-After) lasts past that moment: then the class's callers send
  once more, and the next throttling answer ends the run on time;
- on success, raises the rate back towards the declared one (additive increase);
- retries a read (an idempotent call) that failed with a retryable error, with the same
  exponential backoff the apply walker uses for writes; a write's other failures go back to
  the walker, which knows whether sending it again is safe.

Time waited, throttling answers and calls are counted per class for the run's summary. The
clock and the sleep are injectable so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from keyplan.apply.retry import RetryPolicy

T = TypeVar("T")

DEFAULT_THROTTLE_TIMEOUT = 30 * 60.0
READ_RETRIES = RetryPolicy()  # the apply walker's policy for writes, applied to reads here
EPSILON = 1e-9
MIN_SLEEP = 1e-4  # a wait never shorter than this, so a clock's rounding cannot spin
MIN_RATE_FRACTION = 0.02  # the rate never falls below 2 % of the declared one
INCREASE_FRACTION = 0.05  # each success gives back 5 % of the declared rate
# The rates a user may set in `rate_limits`: slower than one call every 100 s no apply finishes,
# and a number that is not finite cannot be paced by.
MIN_RATE_OVERRIDE = 0.01
MAX_RATE_OVERRIDE = 1_000_000.0
_RATE_RULE = (
    f"a rate is requests per second, a number from {MIN_RATE_OVERRIDE:g} (one call every 100 s) to "
    f"{MAX_RATE_OVERRIDE:,.0f}"
)


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(_RATE_RULE)
    return value


def _within_bounds(value: float) -> float:
    if not (math.isfinite(value) and MIN_RATE_OVERRIDE <= value <= MAX_RATE_OVERRIDE):
        raise ValueError(_RATE_RULE)  # the value is not quoted: it may come from a sensitive variable
    return value


RateOverride = Annotated[float, BeforeValidator(_not_a_bool), AfterValidator(_within_bounds)]


class RateClass(BaseModel):
    """An operation class of a provider and its documented default rate."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The class's name, as written in `rate_limits`.")
    per_second: float = Field(gt=0, description="Sustained requests per second the cloud allows by default.")
    operations: tuple[str, ...] = Field(description="The API operations the class covers.")
    scope: str = Field(description='Who shares the budget, e.g. "account and region".')
    source: str = Field(description="Where the number is published (docs/quotas.md).")
    burst: int = Field(default=0, ge=0, description="Calls allowed at once before pacing (0: half a second's worth).")
    sensitive: bool = Field(
        default=False, description="The rate is a user's override derived from a sensitive value: never shown."
    )

    @property
    def capacity(self) -> float:
        """The burst keyplan allows itself: by default half of what a cloud counting per second
        would allow, so the cloud's own bucket keeps half its burst as slack, and calls that
        reach it bunched up (a delayed call followed by one on time) are not throttled."""
        return float(self.burst) if self.burst else max(1.0, self.per_second / 2)


def apply_overrides(
    classes: Iterable[RateClass], overrides: dict[str, float], *, sensitive: bool = False
) -> tuple[RateClass, ...]:
    """The classes with the user's `rate_limits` applied (names were checked by the settings);
    `sensitive` when the overrides derive from a sensitive value."""
    return tuple(
        c.model_copy(update={"per_second": overrides[c.name], "sensitive": sensitive}) if c.name in overrides else c
        for c in classes
    )


class NotSent(Exception):
    """A step given up while its first call waited for its quota, because the run is stopping (an
    interrupt): nothing of the step was sent, so the cloud did nothing for it."""


_STEP = threading.local()  # whether the step this thread runs has sent a call (see begin_step)


def begin_step() -> None:
    """The calling thread starts a step (an apply action): until it sends its first call, a stop
    may end its waits for a quota with `NotSent`; after, the step is in flight and finishes."""
    _STEP.sent = False


class Throttled(Exception):
    """A class was throttled for a whole `throttle_timeout` without progress."""

    def __init__(self, target: str, rate_class: str, waited: float, *, classed: bool = True) -> None:
        super().__init__(f"{target} throttled {rate_class} for {waited:.0f} s")
        self.target = target
        self.rate_class = rate_class  # the class, or the operation when no class covers it
        self.waited = waited
        self.classed = classed  # whether `rate_class` is a class `rate_limits` can set


@dataclass
class ClassStats:
    calls: int = 0
    throttled: int = 0
    retried: int = 0
    waited_seconds: float = 0.0


@dataclass
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class ClassLimiter:
    """A token bucket whose rate adapts by AIMD. A paced class starts at its declared rate and
    never exceeds it; an unpaced one (a block with its own `endpoint`, whose limits keyplan does
    not know) sends freely until the first throttling answer, then paces at half the rate it
    was measured sending at and adapts from there."""

    def __init__(
        self,
        rate_class: RateClass,
        clock: Clock,
        *,
        paced: bool = True,
        patience: float = math.inf,
        stopping: threading.Event | None = None,
    ) -> None:
        self.rate_class = rate_class
        self._stopping = stopping or threading.Event()  # set: calls still waiting for a turn give up
        self._patience = patience  # the run's throttle timeout: no wait of a stalled class is held beyond it
        self.ceiling: float | None = rate_class.per_second if paced else None
        self.rate: float | None = self.ceiling
        self._step = rate_class.per_second * INCREASE_FRACTION
        self._floor = rate_class.per_second * MIN_RATE_FRACTION
        self.capacity = rate_class.capacity
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock.now()
        self._not_before = 0.0
        self._last_decrease: float | None = None  # when a throttling answer last halved the rate
        self._stalled_since: float | None = None  # the first throttling answer since the last success
        self._recent: deque[float] = deque(maxlen=256)  # admission times, to measure an unpaced rate
        self._lock = threading.Lock()
        self.stats = ClassStats()

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def admit(self) -> float:
        """Take a token, waiting as long as needed; the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock.now()
                self._refill(now)
                hold = self._not_before - now
                patience_left = self._patience_left(now)
                turn = hold <= 0 and (self.rate is None or self._tokens >= 1.0 - EPSILON)
                if turn or patience_left <= 0:  # at the throttle timeout the next answer decides
                    if self.rate is not None:
                        self._tokens = max(0.0, self._tokens - 1.0)
                    self._recent.append(now)
                    self.stats.calls += 1
                    self.stats.waited_seconds += waited
                    return waited
                delay = max(hold, (1.0 - self._tokens) / self.rate if self.rate else 0.0, MIN_SLEEP)
                delay = max(min(delay, patience_left), MIN_SLEEP)
            self._pause(delay)
            waited += delay

    def _pause(self, seconds: float) -> None:
        _pause(self._clock, self._stopping, seconds, self.rate_class.name)

    def _patience_left(self, now: float) -> float:
        """Seconds until the throttle timeout of a class throttled since its last success (infinite
        for a class that is not)."""
        if self._stalled_since is None:
            return math.inf
        return self._stalled_since + self._patience - now

    def _measured_rate(self, now: float) -> float:
        window = [t for t in self._recent if now - t <= 1.0]
        return float(len(window))

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """A call of this class was throttled. The rate is halved once per throttling event: a
        call sent (`sent_at`) before the last decrease was in flight at the old rate, so its
        answer says nothing new (32 calls in flight throttled together would otherwise divide
        the rate by 2^32, and it climbs back 5 % of the declared rate per success)."""
        with self._lock:
            now = self._clock.now()
            self._refill(now)
            self.stats.throttled += 1
            if self._stalled_since is None:
                self._stalled_since = now
            stale = sent_at is not None and self._last_decrease is not None and sent_at < self._last_decrease
            if self.rate is None:
                measured = max(1.0, self._measured_rate(now))
                self.rate = max(1.0, measured / 2)
                self._step = max(0.05, measured * INCREASE_FRACTION)
                self._floor = min(self._floor, self.rate)
                self._last_decrease = now
            elif not stale:
                self.rate = max(self._floor, self.rate / 2)
                self._last_decrease = now
            self._tokens = min(self._tokens, 0.0)
            if retry_after:
                # A Retry-After reaching past the throttle timeout is held only until the timeout,
                # so the next answer ends the run on time instead of a day later.
                resume = now + min(retry_after, self._patience_left(now))
                self._not_before = max(self._not_before, resume)

    def succeeded(self) -> None:
        with self._lock:
            self._stalled_since = None
            if self.rate is not None:
                raised = self.rate + self._step
                self.rate = min(self.ceiling, raised) if self.ceiling is not None else raised

    def stalled_for(self) -> float:
        with self._lock:
            return 0.0 if self._stalled_since is None else self._clock.now() - self._stalled_since


def _pause(clock: Clock, stopping: threading.Event, seconds: float, waiting_for: str) -> None:
    """Wait for a turn; raise `NotSent` when the run stops meanwhile (or had stopped) and the
    step has sent nothing yet (a step that has, say a creation waiting to add its alias, is in
    flight and waits on)."""
    may_give_up = not getattr(_STEP, "sent", True)
    if may_give_up and stopping.is_set():
        raise NotSent(waiting_for)
    if may_give_up and clock.sleep is time.sleep:
        stopping.wait(seconds)  # woken at once by a stop
    else:
        clock.sleep(seconds)  # in flight, or an injected clock (tests of the arithmetic)
    if may_give_up and stopping.is_set():
        raise NotSent(waiting_for)


class TargetLimits:
    """The limiters of one provider block (a target such as `kms.main`)."""

    def __init__(
        self,
        target: str,
        classes: Iterable[RateClass],
        throttle_timeout: float,
        clock: Clock,
        *,
        paced: Callable[[RateClass], bool] = lambda c: True,
        stopping: threading.Event | None = None,
    ) -> None:
        self.target = target
        self.throttle_timeout = throttle_timeout
        self._clock = clock
        self._stopping = stopping or threading.Event()
        self._limiters = {
            c.name: ClassLimiter(c, clock, paced=paced(c), patience=throttle_timeout, stopping=stopping)
            for c in classes
        }
        self._class_of = {op: c.name for c in classes for op in c.operations}

    def limiter(self, operation: str) -> ClassLimiter | None:
        name = self._class_of.get(operation)
        return self._limiters.get(name) if name else None

    def call(
        self,
        operation: str,
        send: Callable[[], T],
        *,
        read: bool,
        throttling: Callable[[BaseException], float | None | bool],
        retryable: Callable[[BaseException], bool],
    ) -> T:
        """`send()` admitted through the operation's class. `throttling(error)` says whether an
        error is the cloud's throttling answer (False) or gives its Retry-After in seconds (a
        number, or None/True when it gave none); `retryable(error)` whether a read may be sent
        again after backoff."""
        limiter = self.limiter(operation)
        attempt = 0
        throttled_since: float | None = None  # an operation no class covers: since when this call is throttled
        while True:
            if limiter is not None:
                limiter.admit()
            sent_before = getattr(_STEP, "sent", True)
            _STEP.sent = True  # from here the cloud may act on this step's call
            sent_at = self._clock.now()
            try:
                result = send()
            except Exception as error:  # every failure is judged below; none is swallowed
                retry_after = throttling(error)
                if retry_after is not False:
                    _STEP.sent = sent_before  # a throttling answer: the cloud did nothing for this call
                    wait = None if retry_after is True else retry_after
                    if limiter is None:
                        throttled_since = self._back_off(operation, wait, throttled_since, error)
                    else:
                        self._wait_out(limiter, operation, wait, error, sent_at)
                    continue
                attempt += 1
                if read and retryable(error) and READ_RETRIES.allows(attempt):
                    if limiter is not None:
                        limiter.stats.retried += 1
                    self._clock.sleep(READ_RETRIES.delay(attempt - 1))
                    continue
                raise
            if limiter is not None:
                limiter.succeeded()
            return result

    def _back_off(self, operation: str, retry_after: float | None, since: float | None, error: BaseException) -> float:
        """An operation no class covers (a proof's cryptographic call) was throttled: wait on our
        own, within the same throttle timeout as a class (a Retry-After reaching past it is held
        only until then); the time this call was first throttled."""
        now = self._clock.now()
        since = now if since is None else since
        stalled = now - since
        if stalled >= self.throttle_timeout:
            raise Throttled(self.target, operation, stalled, classed=False) from error
        wait = retry_after if retry_after else READ_RETRIES.delay(3)
        # a first interrupt ends this wait too, for a step that has sent nothing the cloud acted on
        _pause(self._clock, self._stopping, max(MIN_SLEEP, min(wait, self.throttle_timeout - stalled)), operation)
        return since

    def _wait_out(
        self, limiter: ClassLimiter, operation: str, retry_after: float | None, error: BaseException, sent_at: float
    ) -> None:
        limiter.throttled(retry_after, sent_at)
        stalled = limiter.stalled_for()
        if stalled >= self.throttle_timeout:
            raise Throttled(self.target, limiter.rate_class.name, stalled) from error

    def summary(self) -> list[tuple[RateClass, ClassStats]]:
        return [(lim.rate_class, lim.stats) for lim in self._limiters.values() if lim.stats.calls]


@dataclass
class CallLimits:
    """The limiters of one run, one `TargetLimits` per provider block."""

    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT
    clock: Clock = field(default_factory=Clock)
    _targets: dict[str, TargetLimits] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """The run is stopping (a first interrupt): calls waiting for their quota give up with
        `NotSent` instead of waiting, possibly until the throttle timeout, for a turn."""
        self._stopping.set()

    def target(
        self, address: str, classes: Iterable[RateClass], *, paced: Callable[[RateClass], bool] = lambda c: True
    ) -> TargetLimits:
        with self._lock:
            if address not in self._targets:
                self._targets[address] = TargetLimits(
                    address, tuple(classes), self.throttle_timeout, self.clock, paced=paced, stopping=self._stopping
                )
            return self._targets[address]

    def waits(self) -> list[tuple[str, RateClass, ClassStats]]:
        """Per target and class: the classes that waited or were throttled, most waited first."""
        with self._lock:
            rows = [
                (address, rate_class, stats)
                for address, limits in self._targets.items()
                for rate_class, stats in limits.summary()
                if stats.waited_seconds >= 0.05 or stats.throttled
            ]
        return sorted(rows, key=lambda row: -row[2].waited_seconds)
