"""The apply scheduler on its own: how long it takes to walk graphs of growing size when every
action does nothing, keyplan's way (networkx in-degrees of the remaining graph, a ready queue,
completions on a queue) beside the naive way (after every completion, scan every node for one
whose dependencies are all done), and the previous walker's hand-kept in-degree counts. Run by hand:

    .venv/bin/python bench/scheduler.py [--sizes 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import queue
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import networkx as nx

from keyplan.apply.scheduler import Scheduler


def plan_shaped_graph(keys: int) -> nx.DiGraph:
    """Per key the chain a create makes: generate -> create -> parameters -> wrap -> import -> update."""
    graph = nx.DiGraph()
    for k in range(keys):
        chain = [f"{step} {k}" for step in ("generate", "create", "parameters", "wrap", "import", "update")]
        nx.add_path(graph, chain)
        graph.add_edge(chain[0], chain[3])
    return graph


class Quiet:
    def failed(self, node: str, error: BaseException) -> None: ...
    def skipped(self, node: str, because: str) -> None: ...


def keyplan_way(graph: nx.DiGraph, parallelism: int) -> float:
    started = time.perf_counter()
    Scheduler(graph, parallelism=parallelism).run(lambda node: None, Quiet())
    return time.perf_counter() - started


def counted_way(graph: nx.DiGraph, parallelism: int) -> float:
    """The previous walker: in-degree counts kept by hand in a dict, a ready queue."""
    started = time.perf_counter()
    waiting = {node: graph.in_degree(node) for node in graph.nodes}
    ready = deque(sorted(node for node, count in waiting.items() if count == 0))
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    in_flight = 0
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        while ready or in_flight:
            while ready and in_flight < parallelism:
                node = ready.popleft()
                pool.submit(lambda: None).add_done_callback(lambda _, node=node: finished.put(node))
                in_flight += 1
            node = finished.get()
            in_flight -= 1
            for dependent in graph.successors(node):
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
    return time.perf_counter() - started


def naive_way(graph: nx.DiGraph, parallelism: int) -> float:
    started = time.perf_counter()
    done: set[str] = set()
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        while len(done) < graph.number_of_nodes():
            for node in graph.nodes:  # the scan after every completion
                if len(running) >= parallelism:
                    break
                if node not in done and node not in running.values() and all(p in done for p in graph.predecessors(node)):
                    running[pool.submit(lambda: None)] = node
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done.add(running.pop(future))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--naive-up-to", type=int, default=5000)
    parser.add_argument("--parallelism", type=int, default=10)
    args = parser.parse_args()
    print("| keys | actions | keyplan (s) | per action (µs) | hand-kept counts (s) | naive scan (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for keys in args.sizes:
        graph = plan_shaped_graph(keys)
        ours = keyplan_way(graph, args.parallelism)
        counted = counted_way(graph, args.parallelism)
        naive = f"{naive_way(graph, args.parallelism):.2f}" if keys <= args.naive_up_to else "(not run)"
        per = ours / graph.number_of_nodes() * 1e6
        print(f"| {keys:,} | {graph.number_of_nodes():,} | {ours:.2f} | {per:.0f} | {counted:.2f} | {naive} |")


if __name__ == "__main__":
    main()
