"""How long a plan's work will take at least under the request quotas it must stay within.

Each provider block says how many calls of each of its operation classes one contract operation
usually makes (`ProviderSettings.quota_cost`) and at what rate each class is allowed
(`rate_classes`, with the block's `rate_limits`). The plan's actions are counted per block and
class; the class that needs the longest (calls ÷ rate) bounds the apply, since the walker keeps
every class busy at once (`apply/scheduler.py`). Only paced classes count: against its own
`endpoint` a block is paced only in the classes its `rate_limits` name. The plan names it only
when the work is long enough to matter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from keyplan.plan.model import Action, PlannedChange, QuotaEstimate
from keyplan.provider import ProviderSettings

WORTH_SAYING_SECONDS = 30.0


def quota_estimate(
    actions: Iterable[Action], settings: Mapping[str, ProviderSettings], changes: Iterable[PlannedChange] = ()
) -> QuotaEstimate | None:
    """The bounding (target, class) of these actions, or None when no class needs 30 s. The
    plan's `changes` say how many aliases each key's update adds."""
    added = {
        (c.address, c.target): len(set(c.after.aliases) - set(c.before.aliases if c.before else ()))
        for c in changes
        if c.after is not None
    }
    calls: defaultdict[tuple[str, str], float] = defaultdict(float)
    for action in actions:
        block = settings.get(action.target or "")
        if block is None:
            continue
        aliases_added = added.get((action.address or "", action.target), 0)
        for rate_class, count in block.quota_cost(action.kind.value, aliases_added=aliases_added).items():
            calls[(action.target or "", rate_class)] += count
    best: QuotaEstimate | None = None
    for (target, class_name), count in calls.items():
        block = settings[target]
        declared = next((c for c in block.rate_classes() if c.name == class_name), None)
        if declared is None or not block.paced(declared) or declared.sensitive:
            continue  # limits keyplan does not know, or may not show: nothing to say how long
        rate = declared.per_second
        seconds = count / rate
        if best is None or seconds > best.seconds:
            best = QuotaEstimate(
                seconds=seconds, target=target, rate_class=class_name, per_second=rate, calls=round(count)
            )
    return best if best is not None and best.seconds >= WORTH_SAYING_SECONDS else None


def duration_text(seconds: float) -> str:
    """`about 3 min 20 s`: two units at most, rounded to what an estimate deserves."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
    if minutes:
        secs = 10 * round(secs / 10)
        if secs == 60:
            minutes, secs = minutes + 1, 0
        return f"about {minutes} min {secs} s" if secs else f"about {minutes} min"
    return f"about {secs} s"


def rate_text(per_second: float) -> str:
    """5/s, 0.5/s; or per minute when under one a second (60/min)."""
    if per_second >= 1:
        return f"{per_second:g}/s"
    return f"{per_second * 60:g}/min"


def estimate_line(estimate: QuotaEstimate) -> str:
    return (
        f"Estimated time: {duration_text(estimate.seconds)}: {estimate.target} allows {estimate.rate_class} "
        f"{rate_text(estimate.per_second)} ({estimate.calls:,} calls)."
    )
