"""A generic scheduler for a dependency graph: run every node as soon as all the nodes it
depends on have succeeded, several at once, and skip what depends on a failure.

It knows nothing of keys or clouds: nodes are ids in a networkx `DiGraph` (an edge a -> b means
b depends on a) and the work is a callable per node. The graph still to be done is a copy of the
original: a node leaves it when it succeeds, and a failed node leaves it with every node that
depends on it (those are reported as skipped). A node is ready when it has no predecessor left
(`in_degree` is 0). Each node and each edge is handled once, so a walk is linear in the size of
the graph; work is handed to the thread pool only as workers free up and completions come back
on a queue.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import networkx as nx


class SchedulerListener(Protocol):
    def failed(self, node: str, error: BaseException) -> None: ...
    def skipped(self, node: str, because: str) -> None: ...


@dataclass
class Outcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Scheduler:
    def __init__(self, graph: nx.DiGraph, *, parallelism: int, name: str = "keyplan-apply") -> None:
        if not nx.is_directed_acyclic_graph(graph):
            raise ValueError(f"the graph has a cycle: {nx.find_cycle(graph)}")
        self.graph = graph
        self.parallelism = max(1, parallelism)
        self.name = name

    def run(self, work: Callable[[str], Future[None] | None], listener: SchedulerListener) -> Outcome:
        """Run `work` per node. Work may return a future: its worker is free at once, and the node
        counts as done (its dependents become ready) only when that future completes."""
        outcome = Outcome()
        remaining: nx.DiGraph = self.graph.copy()
        ready = deque(sorted(node for node, degree in remaining.in_degree() if degree == 0))
        finished: queue.SimpleQueue[tuple[str, str, BaseException | None]] = queue.SimpleQueue()
        in_flight = 0  # nodes holding a worker
        started = 0  # nodes started and not yet done (their future may still be pending)
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix=self.name) as pool:
            while ready or started:
                while ready and in_flight < self.parallelism:
                    node = ready.popleft()
                    pool.submit(work, node).add_done_callback(_reporter(finished, node))
                    in_flight += 1
                    started += 1
                event, node, error = finished.get()
                if event == "freed":
                    in_flight -= 1
                    continue
                started -= 1
                if error is None:
                    outcome.succeeded.append(node)
                    dependents = list(remaining.succ[node])
                    remaining.remove_node(node)
                    ready.extend(d for d in dependents if not remaining.pred[d])  # in-degree now 0
                    continue
                outcome.failed.append(node)
                listener.failed(node, error)
                # Nothing downstream can run now; none of it has started (it all waits on this node).
                downstream = sorted(nx.descendants(remaining, node))
                remaining.remove_nodes_from([node, *downstream])
                for skipped in downstream:
                    outcome.skipped.append(skipped)
                    listener.skipped(skipped, node)
        return outcome


def _reporter(
    finished: queue.SimpleQueue[tuple[str, str, BaseException | None]], node: str
) -> Callable[[Future[Future[None] | None]], None]:
    def report(future: Future[Future[None] | None]) -> None:
        finished.put(("freed", node, None))
        error = future.exception()
        later = future.result() if error is None else None
        if later is None:
            finished.put(("done", node, error))
        else:
            later.add_done_callback(lambda done: finished.put(("done", node, done.exception())))

    return report
