"""What state writes cost during an apply, per backend, with a fixed network latency to the store.

An apply-shaped workload drives keyplan's real `StateCommitter` and `StateStore`: N keys, each
a chain of 4 mutations (generate, create, import, update), each mutation preceded by one
simulated cloud call of CLOUD_MS, `-parallelism` workers taking whichever step is ready (as the
walker does). Every mutation is durable in the backend before its next step starts, exactly as
in `keyplan apply`. The store is reached through a TCP proxy that delays every client-to-server
chunk by LATENCY_MS (one round trip per request): moto's S3 server process, and a throwaway
PostgreSQL cluster (Unix socket behind a loopback TCP proxy). The local file has no latency.

Ways side by side: "naive" writes the whole state document per mutation; "blocking" journals
with group commit but keeps the worker waiting until its line is durable; "keyplan" (deferred)
journals with group commit, frees the worker at once and starts the step's dependents only once
its line is durable, as `keyplan apply` does; "audited" is keyplan's way with the audit trail
beside the state, as `keyplan apply` keeps it: a `started` entry durable in the backend before
each cloud call (group commit across workers), the outcome appended in the background.

    .venv/bin/python bench/state_backends.py [--keys 1000] [--latency-ms 20] [--cloud-ms 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import networkx as nx  # noqa: E402

from keyplan.apply.audit import AuditLog  # noqa: E402
from keyplan.apply.committer import StateCommitter  # noqa: E402
from keyplan.apply.scheduler import Scheduler  # noqa: E402
from keyplan.plan.model import ActionKind, BaseAction, NoArgs  # noqa: E402
from keyplan.state.model import KeyRecord, MaterialVersion, State  # noqa: E402
from keyplan.state.store import StateStore  # noqa: E402
from keyplan.state.workspaces import open_backend  # noqa: E402
from providers.pgstate.testing import postgres_cluster  # noqa: E402
from providers.s3state.testing import moto_server  # noqa: E402

STEPS = 4


class LatencyProxy:
    """Loopback TCP proxy adding `delay` seconds to every chunk sent towards the server."""

    def __init__(self, connect: Callable[[], asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]], delay: float) -> None:
        self.connect, self.delay = connect, delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await self.connect()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
            # Each chunk is delivered `delay` after it arrived, in order: chunks sent back to back
            # (a request's headers, then its body) travel together, as on a network link, rather
            # than paying the latency once per chunk.
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def receive() -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await reader.read(65536):
                        queue.put_nowait((self.loop.time() + delay, data))
                queue.put_nowait((0.0, b""))

            receiving = asyncio.ensure_future(receive())
            with contextlib.suppress(ConnectionError, OSError):
                while True:
                    due, data = await queue.get()
                    if not data:
                        break
                    if delay:
                        await asyncio.sleep(max(0.0, due - self.loop.time()))
                    writer.write(data)
                    await writer.drain()
            receiving.cancel()
            writer.close()

        await asyncio.gather(pump(client_reader, server_writer, self.delay), pump(server_reader, client_writer, 0))


def _record(address: str, step: int) -> KeyRecord:
    return KeyRecord(
        address=address, algorithm="AES_256", usage="encrypt", source="software.s",
        materials=[MaterialVersion(version=1, handle=f"h{step}", fingerprint="kcv:00", created_at=datetime.now(UTC))],
    )


WAYS = {
    "naive": "naive: whole state per mutation",
    "blocking": "journal, group commit, worker waits",
    "deferred": "journal, group commit, dependents wait (keyplan)",
    "audited": "keyplan's way + audit entry durable before each call",
}
# the apply steps the workload's four mutations stand for: the three that change a cloud are audited
_KINDS = (ActionKind.GENERATE_MATERIAL, ActionKind.CREATE_KEY, ActionKind.IMPORT_MATERIAL, ActionKind.UPDATE_KEY)


class _Quiet:
    def failed(self, node: str, error: BaseException) -> None:
        raise error

    def skipped(self, node: str, because: str) -> None:
        pass


def run_apply(store: StateStore, keys: int, parallelism: int, cloud_ms: float, way: str) -> tuple[float, int]:
    """keyplan's scheduler over N chains of STEPS steps; each step is one cloud call then one
    state mutation, made durable the way `way` says."""
    state = store.read() or State()
    store.write(state)
    committer = StateCommitter(store, state)
    graph = nx.DiGraph()
    for k in range(keys):
        nx.add_path(graph, [f"{k}:{step}" for step in range(STEPS)])
    if way in ("deferred", "audited"):
        committer.defer_durability()
    audit = AuditLog(store.backend, "sha256:bench", workspace=store.workspace) if way == "audited" else None

    def work(node: str) -> Future[None] | None:
        k, step = (int(part) for part in node.split(":"))
        address = f"key.k{k:05d}"
        action = BaseAction.model_construct(id=node, kind=_KINDS[step], address=address, target="cloud.main", args=NoArgs())
        if audit is not None:
            audit.started(action)  # durable before the call
        time.sleep(cloud_ms / 1000)  # the cloud call
        if audit is not None:
            audit.mutated(action, "ok", f"remote-{k}")
        mutate = lambda s: s.keys.__setitem__(address, _record(address, step))  # noqa: E731
        if way == "naive":
            committer.commit(mutate)
        else:
            committer.commit(mutate, key=address)
        return committer.durability()

    started = time.perf_counter()
    Scheduler(graph, parallelism=parallelism).run(work, _Quiet())
    if audit is not None:
        audit.flush()
    committer.finish()
    return time.perf_counter() - started, committer.writes


@contextlib.contextmanager
def backends(latency: float) -> Iterator[list[tuple[str, Callable[[str], StateStore]]]]:
    with tempfile.TemporaryDirectory() as scratch, moto_server() as moto, postgres_cluster() as cluster:
        work = Path(scratch)
        moto_port = int(moto.url.rsplit(":", 1)[1])
        s3_proxy = LatencyProxy(lambda: asyncio.open_connection("127.0.0.1", moto_port), latency)
        socket_path = str(cluster.socket_dir / f".s.PGSQL.{cluster.port}")
        pg_proxy = LatencyProxy(lambda: asyncio.open_unix_connection(socket_path), latency)
        conn = cluster.conn_str().replace(f"host={cluster.socket_dir} port={cluster.port}", f"host=127.0.0.1 port={pg_proxy.port}")
        os.environ["KEYPLAN_BENCH_PG"] = conn

        def local(name: str) -> StateStore:
            return StateStore(open_backend("local", {"path": f"{name}/s.json"}, work))

        def s3(name: str) -> StateStore:
            bucket = moto.new_bucket()
            attributes = {"bucket": bucket, "key": f"{name}/s.json", "endpoint": f"http://127.0.0.1:{s3_proxy.port}",
                          "credentials": "local", "region": "us-east-1"}
            return StateStore(open_backend("s3", attributes, work))

        def pg(name: str) -> StateStore:
            return StateStore(open_backend("pg", {"conn_str_env": "KEYPLAN_BENCH_PG", "schema_name": name}, work))

        yield [("local", local), ("s3 (moto)", s3), ("pg", pg)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cloud-ms", type=float, default=20.0)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--naive-keys", type=int, default=100, help="keys for the naive and blocking runs (slow)")
    parser.add_argument("--ways", default="deferred,audited,blocking,naive", help="which ways to run, comma-separated")
    parser.add_argument("--backends", default="local,s3,pg", help="which backends to run, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each cell is the median of its rounds")
    args = parser.parse_args()
    print(f"{STEPS} mutations per key, {args.cloud_ms:g} ms per cloud call, store latency {args.latency_ms:g} ms "
          f"(none for local), parallelism {args.parallelism}\n")
    print("| backend | way | keys | wall time | per key | vs local (keyplan) | state writes | state cost per mutation |")
    print("|---|---|---|---|---|---|---|---|")
    chosen = [w for w in WAYS if w in args.ways.split(",")]
    with backends(args.latency_ms / 1000) as stores:
        stores = [(name, make) for name, make in stores if name.split()[0] in args.backends.split(",")]
        results: dict[tuple[str, str], list[tuple[float, int]]] = {}
        # Rounds interleave the backends, so a machine whose load changes during the run weighs
        # on each of them alike; each cell is the median of its rounds.
        for round_ in range(args.repeat):
            for way in chosen:
                for name, make in stores:
                    keys = args.keys if way in ("deferred", "audited") else args.naive_keys
                    store = make(f"{way}{round_}{name.split()[0]}")
                    results.setdefault((name, way), []).append(
                        run_apply(store, keys, args.parallelism, args.cloud_ms, way)
                    )
                    store.backend.close()
        local = results.get(("local", "deferred"))
        local_per_key = statistics.median(s for s, _ in local) / args.keys if local else None
        for name, _ in stores:
            for way in chosen:
                keys = args.keys if way in ("deferred", "audited") else args.naive_keys
                seconds = statistics.median(s for s, _ in results[(name, way)])
                writes = int(statistics.median(w for _, w in results[(name, way)]))
                floor = keys * STEPS * args.cloud_ms / 1000 / args.parallelism
                per_key = seconds / keys
                versus = f"{per_key / local_per_key:.2f}x" if local_per_key else "—"
                cost = max(seconds - floor, 0.0) / (keys * STEPS) * 1000
                print(f"| {name} | {WAYS[way]} | {keys} | {seconds:.1f} s | {per_key * 1000:.1f} ms | {versus} | "
                      f"{writes} | {cost:.2f} ms |")
    floor = args.keys * STEPS * args.cloud_ms / 1000 / args.parallelism
    print(f"\nWith no state writes at all, {args.keys} keys take {floor:.1f} s (cloud calls / parallelism).")


if __name__ == "__main__":
    main()
