"""The generic scheduler and the handler table, without any cloud."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import networkx as nx
import pytest

from keyplan.apply.handlers import HANDLERS
from keyplan.apply.scheduler import Interruption, Scheduler
from keyplan.plan.model import ACTION_MODELS, ActionKind


class Recorder:
    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.skips: list[tuple[str, str]] = []

    def failed(self, node: str, error: BaseException) -> None:
        self.failures.append((node, str(error)))

    def skipped(self, node: str, because: str) -> None:
        self.skips.append((node, because))


def diamond_with_tail() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_edges_from([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"), ("x", "y")])
    return graph


def test_every_node_runs_after_all_it_depends_on() -> None:
    graph = diamond_with_tail()
    order: list[str] = []
    lock = threading.Lock()

    def work(node: str) -> None:
        with lock:
            order.append(node)

    outcome = Scheduler(graph, parallelism=3).run(work, Recorder())
    assert sorted(outcome.succeeded) == sorted(graph.nodes)
    assert sorted(order) == sorted(graph.nodes)
    for a, b in graph.edges:
        assert order.index(a) < order.index(b), (a, b)


def test_a_failure_skips_only_its_descendants() -> None:
    graph = diamond_with_tail()
    ran: list[str] = []

    def work(node: str) -> None:
        ran.append(node)
        if node == "b":
            raise RuntimeError("b broke")

    recorder = Recorder()
    outcome = Scheduler(graph, parallelism=1).run(work, recorder)
    assert outcome.failed == ["b"]
    assert recorder.failures == [("b", "b broke")]
    assert sorted(outcome.skipped) == ["d", "e"]
    assert sorted(recorder.skips) == [("d", "b"), ("e", "b")]
    assert "d" not in ran and "e" not in ran
    assert sorted(outcome.succeeded) == ["a", "c", "x", "y"]


def test_no_more_than_parallelism_nodes_run_at_once() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(f"n{i}" for i in range(20))
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def work(node: str) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(0.01)
        with lock:
            running -= 1

    outcome = Scheduler(graph, parallelism=4).run(work, Recorder())
    assert len(outcome.succeeded) == 20
    assert 1 <= peak <= 4


def test_a_cycle_is_refused() -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="cycle"):
        Scheduler(graph, parallelism=2)


def test_every_action_kind_has_a_model_and_a_handler() -> None:
    assert set(ACTION_MODELS) == set(ActionKind)
    assert set(HANDLERS) == set(ActionKind)


def test_a_malformed_plugin_answer_is_a_diagnostic_naming_the_plugin() -> None:
    from keyplan.apply.walker import _diagnostic
    from keyplan.plan.model import CreateKey, CreateKeyArgs
    from keyplan.provider import CreateKeyResponse, PluginAnswerError, Provider, checked_answer

    good = CreateKeyResponse(remote_id="k-1")
    assert checked_answer("cloud.main", Provider.create_key, good) is good
    with pytest.raises(PluginAnswerError):
        checked_answer("cloud.main", Provider.promote_version, None)  # every operation answers a model
    with pytest.raises(PluginAnswerError) as caught:
        checked_answer("cloud.main", Provider.create_key, {"remote_id": "k-1"})
    with pytest.raises(PluginAnswerError):
        checked_answer("cloud.main", Provider.promote_version, good)
    action = CreateKey(id="create_key k @ cloud.main", address="key.k", target="cloud.main", args=CreateKeyArgs())
    diagnostic = _diagnostic(action, caught.value)
    assert "cloud.main" in diagnostic.summary
    assert "create_key answered dict, expected CreateKeyResponse" in diagnostic.detail
    assert "plugin" in diagnostic.detail


def test_a_node_returning_a_future_frees_its_worker_and_is_done_when_the_future_is() -> None:
    graph = nx.DiGraph([("a1", "a2"), ("b1", "b2")])
    gate: Future[None] = Future()
    seen_gate_open: list[bool] = []

    def work(node: str) -> Future[None] | None:
        if node == "a1":
            return gate  # a1's outcome is known only later; its worker goes on with b1, b2
        if node == "a2":
            seen_gate_open.append(gate.done())
        if node == "b2":
            gate.set_result(None)
        return None

    outcome = Scheduler(graph, parallelism=1).run(work, Recorder())
    assert sorted(outcome.succeeded) == ["a1", "a2", "b1", "b2"]
    assert seen_gate_open == [True], "a2 started only once a1's future completed"


def chains(count: int, length: int) -> nx.DiGraph:
    graph = nx.DiGraph()
    for c in range(count):
        nx.add_path(graph, [f"c{c}-{step}" for step in range(length)])
    return graph


def test_a_started_chain_is_finished_before_new_chains_start() -> None:
    order: list[str] = []
    Scheduler(chains(3, 3), parallelism=1).run(order.append, Recorder())
    assert order == ["c0-0", "c0-1", "c0-2", "c1-0", "c1-1", "c1-2", "c2-0", "c2-1", "c2-2"]


def test_one_interruption_hands_out_nothing_more_and_lets_the_nodes_in_flight_finish() -> None:
    interruption = Interruption()
    ran: list[str] = []

    def work(node: str) -> None:
        ran.append(node)
        if node == "c1-1":
            interruption.request("test")

    outcome = Scheduler(chains(3, 3), parallelism=1).run(work, Recorder(), interruption)
    assert outcome.interrupted and not outcome.abandoned
    assert outcome.succeeded == ran == ["c0-0", "c0-1", "c0-2", "c1-0", "c1-1"]
    assert outcome.not_started == ["c1-2", "c2-0", "c2-1", "c2-2"]
    assert outcome.in_flight == [] and outcome.failed == [] and outcome.skipped == []


def test_a_second_interruption_abandons_the_nodes_in_flight() -> None:
    interruption = Interruption()
    release = threading.Event()

    def work(node: str) -> None:
        if node == "c0-1":
            interruption.request("first")
            interruption.request("second")
            release.wait(10)  # still running when the walk ends

    try:
        outcome = Scheduler(chains(2, 2), parallelism=1).run(work, Recorder(), interruption)
    finally:
        release.set()
    assert outcome.interrupted and outcome.abandoned
    assert outcome.succeeded == ["c0-0"] and outcome.in_flight == ["c0-1"]
    assert outcome.not_started == ["c1-0", "c1-1"]
    assert not interruption.walking and interruption.walked


def test_a_node_cancelled_before_it_started_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """An abandoned walk's pool cancels the nodes handed out but not started; their callback
    must not fail (concurrent.futures would log its traceback as the process ends)."""
    import queue

    from keyplan.apply.scheduler import _reporter

    finished: queue.SimpleQueue[tuple[str, str, BaseException | None]] = queue.SimpleQueue()
    never_started: Future[Future[None] | None] = Future()
    never_started.add_done_callback(_reporter(finished, "n"))
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        assert never_started.cancel()
    assert caplog.records == []
    assert finished.empty()
    done: Future[Future[None] | None] = Future()
    done.add_done_callback(_reporter(finished, "m"))
    done.set_result(None)
    assert finished.get_nowait() == ("finished", "m", None)
