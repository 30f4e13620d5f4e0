"""Apply progress, as the walk's listener (`ApplyHooks`), in three forms:

- on a terminal, a live progress bar (rich) with keys done, steps, rate, time elapsed and left,
  and above it a line per finished key (up to `PER_KEY_LINES_UP_TO` keys) and per failure;
- without one (CI, a log file), a line per finished key and per failure, or, for a big apply, a
  progress line every `LINE_INTERVAL` seconds; a line after `QUIET_INTERVAL` seconds without
  one, so a long wait on a quota never looks like a hang;
- with -json, one JSON event per line (`keyplan/apply/events.py`).

Per-step detail (each step's start and end, retries) is logged at DEBUG (`KEYPLAN_LOG=DEBUG`) and
is in -json; people see keys. Every address or value shown is escaped for the terminal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

from keyplan.apply.events import DiagnosticEvent, KeyEvent, ProgressEvent, StepEvent, diagnostic_event, event_line
from keyplan.apply.summary import KeyFinished, KeyTracker, ProgressSnapshot
from keyplan.diagnostics import Diagnostic
from keyplan.escaping import for_terminal
from keyplan.plan.model import Action, Plan

log = logging.getLogger("keyplan.apply")

PER_KEY_LINES_UP_TO = 100  # above this many keys, progress lines instead of a line per key
LINE_INTERVAL = 5.0  # seconds between progress lines (big applies without a terminal, -json)
QUIET_INTERVAL = 30.0  # seconds without any line before a progress line says keyplan is still at it

_DONE = {
    "create": "created",
    "adopt": "adopted",
    "import": "material imported",
    "update": "updated",
    "rotate": "rotated",
    "delete": "scheduled for deletion",
    "forget": "removed from state",
}


def duration(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def key_line(finished: KeyFinished, snapshot: ProgressSnapshot) -> str:
    """`key.app["a"]: created at cloud.main (3/8 keys)`, or `...: failed at ...` for a failed key."""
    what = "failed" if finished.failed else ", ".join(_DONE.get(kind, kind) for kind in finished.kinds) or "done"
    at = f" at {', '.join(finished.targets)}" if finished.targets else ""
    return for_terminal(f"{finished.address}: {what}{at}") + f" ({snapshot.keys_done}/{snapshot.keys_total} keys)"


def progress_text(snapshot: ProgressSnapshot) -> str:
    """`3/8 keys, 20/48 steps, 1.2 keys/s, 14s elapsed, about 20s left`."""
    failed = f" ({snapshot.keys_failed} failed)" if snapshot.keys_failed else ""
    left = f", about {duration(snapshot.eta_seconds)} left" if snapshot.eta_seconds is not None else ""
    return (
        f"{snapshot.keys_done}/{snapshot.keys_total} keys{failed}, {snapshot.steps_finished}/{snapshot.steps_total} "
        f"steps, {snapshot.keys_per_second:.1f} keys/s, {duration(snapshot.elapsed_seconds)} elapsed{left}"
    )


class _Ticker:
    """Calls `tick` every second from a daemon thread until stopped."""

    def __init__(self, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tick,), name="keyplan-progress", daemon=True)
        self._thread.start()

    def _run(self, tick: Callable[[], None]) -> None:
        while not self._stop.wait(1.0):
            tick()

    def stop(self) -> None:
        self._stop.set()


class _Progress:
    """What the three forms share: the tracker, the per-step debug log, closing."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = KeyTracker(plan, clock)
        self.per_key = self.tracker.keys_total <= PER_KEY_LINES_UP_TO
        self.clock = clock
        self.lock = threading.Lock()
        self.closed = False

    def started(self, action: Action) -> None:
        self.tracker.started(action)

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None:
        log.debug("%s: attempt %d failed (%s); again in %.1fs", action.id, attempt, reason, delay)

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        return

    def not_sent(self, action: Action, because: str) -> None:
        pass  # the key is reported among those not started when the apply ends


class LineProgress(_Progress):
    """Plain lines, for a log or CI: a line per finished key (or a progress line every few
    seconds for a big apply) and per failure."""

    def __init__(self, stream: TextIO, plan: Plan, *, colour: bool) -> None:
        super().__init__(plan)
        self.stream = stream
        self.colour = colour
        self.last_line = self.clock()
        self.ticker = _Ticker(self.tick)

    def _write(self, line: str) -> None:
        with self.lock:
            if self.closed:
                return
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_line = self.clock()

    def finished(self, action: Action, seconds: float) -> None:
        key = self.tracker.succeeded(action)
        if key is not None and self.per_key:
            self._write(key_line(key, self.tracker.snapshot()))

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        key = self.tracker.failed(action)
        line = key_line(key, self.tracker.snapshot()) if key is not None else for_terminal(f"{action.label}: failed")
        self._write(f"\x1b[31m{line}\x1b[0m" if self.colour else line)

    def skipped(self, action: Action, because: str) -> None:
        self.tracker.skipped(action)

    def tick(self) -> None:
        quiet = self.clock() - self.last_line
        if quiet >= (QUIET_INTERVAL if self.per_key else LINE_INTERVAL):
            self._write("Applying: " + progress_text(self.tracker.snapshot()))

    def close(self) -> None:
        self.ticker.stop()
        with self.lock:
            self.closed = True


class TerminalProgress(_Progress):
    """A live progress bar on a terminal, with finished keys and failures printed above it."""

    def __init__(self, stream: TextIO, plan: Plan, *, colour: bool) -> None:
        # rich is loaded here, for a terminal only: an apply in CI or into a log prints plain lines
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        super().__init__(plan)
        self.console = Console(file=stream, no_color=not colour, highlight=False)
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("Applying"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
            refresh_per_second=4,
        )
        self.task = self.bar.add_task("apply", total=self.tracker.steps_total, status="")
        self.bar.start()
        self.ticker = _Ticker(self.refresh)

    def refresh(self) -> None:
        snapshot = self.tracker.snapshot()
        with self.lock:
            if not self.closed:
                self.bar.update(self.task, completed=snapshot.steps_finished, status=progress_text(snapshot))

    def _print(self, line: str, style: str | None = None) -> None:
        from rich.text import Text

        with self.lock:
            if not self.closed:
                self.bar.console.print(Text(line, style=style or ""), markup=False, highlight=False)

    def finished(self, action: Action, seconds: float) -> None:
        key = self.tracker.succeeded(action)
        if key is not None and self.per_key:
            self._print(key_line(key, self.tracker.snapshot()))
        self.refresh()

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        key = self.tracker.failed(action)
        line = key_line(key, self.tracker.snapshot()) if key is not None else for_terminal(f"{action.label}: failed")
        self._print(line, style="red")
        self.refresh()

    def skipped(self, action: Action, because: str) -> None:
        self.tracker.skipped(action)
        self.refresh()

    def close(self) -> None:
        self.ticker.stop()
        with self.lock:
            if not self.closed:
                self.closed = True
                self.bar.stop()


class JsonProgress(_Progress):
    """`apply -json`: a JSON event per line for every step, every finished key, and progress
    every few seconds."""

    def __init__(self, stream: TextIO, plan: Plan) -> None:
        super().__init__(plan)
        self.stream = stream
        self.last_progress = self.clock()
        self.ticker = _Ticker(self.tick)

    def _emit(self, *events: StepEvent | KeyEvent | ProgressEvent | DiagnosticEvent) -> None:
        with self.lock:
            if self.closed:
                return
            self.stream.write("".join(event_line(event) for event in events))
            self.stream.flush()

    def _step(self, action: Action, status: str, **details: object) -> StepEvent:
        return StepEvent.model_validate(
            {
                "step": action.id,
                "kind": action.kind.value,
                "address": action.address,
                "target": action.target,
                "status": status,
                **details,
            }
        )

    def started(self, action: Action) -> None:
        super().started(action)
        self._emit(self._step(action, "started"))

    def finished(self, action: Action, seconds: float) -> None:
        key = self.tracker.succeeded(action)
        self._emit(self._step(action, "done", seconds=round(seconds, 3)), *self._key(key))

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        key = self.tracker.failed(action)
        self._emit(
            self._step(action, "failed", reason=diagnostic.summary),
            diagnostic_event(diagnostic),
            *self._key(key),
        )

    def skipped(self, action: Action, because: str) -> None:
        key = self.tracker.skipped(action)
        self._emit(self._step(action, "skipped", reason=f"depends on {because}, which failed"), *self._key(key))

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None:
        super().retrying(action, attempt, delay, reason)
        self._emit(self._step(action, "retrying", attempt=attempt, delay_seconds=round(delay, 3), reason=reason))

    def _key(self, key: KeyFinished | None) -> list[KeyEvent]:
        if key is None:
            return []
        status = "failed" if key.failed else "done"
        return [KeyEvent(address=key.address, status=status, changes=key.kinds, targets=key.targets)]

    def progress(self) -> ProgressEvent:
        snapshot = self.tracker.snapshot()
        return ProgressEvent(
            keys_total=snapshot.keys_total,
            keys_done=snapshot.keys_done,
            keys_failed=snapshot.keys_failed,
            steps_total=snapshot.steps_total,
            steps_finished=snapshot.steps_finished,
            steps_running=snapshot.steps_running,
            elapsed_seconds=round(snapshot.elapsed_seconds, 3),
            keys_per_second=round(snapshot.keys_per_second, 3),
            eta_seconds=None if snapshot.eta_seconds is None else round(snapshot.eta_seconds, 1),
        )

    def tick(self) -> None:
        if self.clock() - self.last_progress >= LINE_INTERVAL:
            self.last_progress = self.clock()
            self._emit(self.progress())

    def close(self) -> None:
        self.ticker.stop()
        self._emit(self.progress())
        with self.lock:
            self.closed = True
