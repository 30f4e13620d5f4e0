"""A generic scheduler for a dependency graph: run every node as soon as all the nodes it
depends on have succeeded, several at once, and skip what depends on a failure.

It knows nothing of keys or clouds: nodes are ids in a networkx `DiGraph` (an edge a -> b means
b depends on a) and the work is a callable per node. The graph still to be done is a copy of the
original: a node leaves it when it succeeds, and a failed node leaves it with every node that
depends on it (those are reported as skipped). A node is ready when it has no predecessor left
(`in_degree` is 0); it goes ahead of the nodes already waiting (depth first). Each node and each
edge is handled once, so a walk is linear in the size of the graph; work is handed to the
thread pool only as workers free up and completions come back on a queue.

An `Interruption` stops a walk from outside (Ctrl-C, SIGTERM, SIGHUP): after the first request
no node is handed out and the walk ends once the nodes in flight are done; after the second the
walk ends at once, leaving the nodes in flight to their threads (`Outcome.abandoned`).
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # imported where a walk starts: importing the walker's types does not load networkx
    import networkx as nx


class NotStarted(Exception):
    """Raised by a node's work when the walk is stopping and the node gave up before it changed
    anything (it waited for its turn): it counts among the nodes not started, not as a failure."""


class SchedulerListener(Protocol):
    def failed(self, node: str, error: BaseException) -> None: ...
    def skipped(self, node: str, because: str) -> None: ...


@dataclass
class Outcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # left when the walk was interrupted
    in_flight: list[str] = field(default_factory=list)  # running when the walk was abandoned
    interrupted: bool = False
    abandoned: bool = False


class Interruption:
    """Requests to stop a walk, from outside it. The first stops handing out nodes and lets the
    ones in flight finish; the second abandons them. `request` may be called from a signal
    handler: it only counts and wakes the walk."""

    def __init__(self) -> None:
        self.requests = 0
        self.reasons: list[str] = []
        self.walked = False  # a walk has listened (it may have ended since)
        self._wake: Callable[[], None] | None = None

    @property
    def stopping(self) -> bool:
        return self.requests >= 1

    @property
    def abandoning(self) -> bool:
        return self.requests >= 2

    @property
    def walking(self) -> bool:
        return self._wake is not None

    def request(self, reason: str = "interrupt") -> None:
        self.requests += 1
        self.reasons.append(reason)
        wake = self._wake
        if wake is not None:
            wake()

    def listen(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake
        self.walked = self.walked or wake is not None


class Scheduler:
    def __init__(self, graph: nx.DiGraph, *, parallelism: int, name: str = "keyplan-apply") -> None:
        import networkx as nx

        if not nx.is_directed_acyclic_graph(graph):
            raise ValueError(f"the graph has a cycle: {nx.find_cycle(graph)}")
        self.graph = graph
        self.parallelism = max(1, parallelism)
        self.name = name

    def run(
        self,
        work: Callable[[str], Future[None] | None],
        listener: SchedulerListener,
        interruption: Interruption | None = None,
        on_stopping: Callable[[], None] | None = None,
    ) -> Outcome:
        """Run `work` per node. Work may return a future: its worker is free at once, and the node
        counts as done (its dependents become ready) only when that future completes.
        `on_stopping` is called once, from the walk's own thread, when a stop is first requested."""
        import networkx as nx

        outcome = Outcome()
        stop = interruption or Interruption()
        remaining: nx.DiGraph = self.graph.copy()
        ready = deque(sorted(node for node, degree in remaining.in_degree() if degree == 0))
        finished: queue.SimpleQueue[tuple[str, str, BaseException | None]] = queue.SimpleQueue()
        in_flight = 0  # nodes holding a worker
        started: set[str] = set()  # nodes started and not yet done (their future may still be pending)
        pool = ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix=self.name)
        stop.listen(lambda: finished.put(("interrupt", "", None)))  # SimpleQueue.put is reentrant
        try:
            while (ready and not stop.stopping) or started:
                while ready and in_flight < self.parallelism and not stop.stopping:
                    node = ready.popleft()
                    pool.submit(work, node).add_done_callback(_reporter(finished, node))
                    in_flight += 1
                    started.add(node)
                event, node, error = finished.get()
                if event == "interrupt":
                    if on_stopping is not None:
                        on_stopping()
                        on_stopping = None
                    if stop.abandoning:
                        outcome.abandoned = True
                        outcome.in_flight = sorted(started)
                        break
                    continue
                if event in ("freed", "finished"):
                    in_flight -= 1
                if event == "freed":
                    continue
                started.discard(node)
                if isinstance(error, NotStarted):
                    continue  # it stays in the graph, with its dependents: not started
                if error is None:
                    outcome.succeeded.append(node)
                    dependents = list(remaining.succ[node])
                    remaining.remove_node(node)
                    # Dependents go first: what is started gets finished before new chains start, so
                    # keys complete one after another (progress, and an interrupt leaves keys done or
                    # not started rather than every key half way).
                    ready.extendleft(reversed([d for d in dependents if not remaining.pred[d]]))  # in-degree 0
                    continue
                outcome.failed.append(node)
                listener.failed(node, error)
                # Nothing downstream can run now; none of it has started (it all waits on this node).
                downstream = sorted(nx.descendants(remaining, node))
                remaining.remove_nodes_from([node, *downstream])
                for skipped in downstream:
                    outcome.skipped.append(skipped)
                    listener.skipped(skipped, node)
        finally:
            stop.listen(None)
            # Abandoned nodes keep their threads: the caller ends the process without joining them.
            pool.shutdown(wait=not outcome.abandoned, cancel_futures=True)
        if stop.stopping:
            outcome.interrupted = True
            outcome.not_started = sorted(set(remaining.nodes) - started)
        return outcome


def _reporter(
    finished: queue.SimpleQueue[tuple[str, str, BaseException | None]], node: str
) -> Callable[[Future[Future[None] | None]], None]:
    def report(future: Future[Future[None] | None]) -> None:
        if future.cancelled():
            return  # handed out but never started: the walk was abandoned and no longer listens
        error = future.exception()
        later = future.result() if error is None else None
        if later is None:
            finished.put(("finished", node, error))  # the worker is free and the node done, as one event
        else:
            finished.put(("freed", node, None))
            later.add_done_callback(lambda done: finished.put(("done", node, done.exception())))

    return report
