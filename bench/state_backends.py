"""What state writes cost during an apply, per backend, with a fixed network latency to the store.

An apply-shaped workload drives keyplan's real `StateCommitter` and `StateStore`: N keys, each
a chain of 4 mutations (generate, create, import, update), each mutation preceded by one
simulated cloud call of CLOUD_MS, `-parallelism` workers taking whichever step is ready (as the
walker does). Every mutation is durable in the backend before its next step starts, exactly as
in `keyplan apply`. The store is reached through a TCP proxy that delays every client-to-server
chunk by LATENCY_MS (one round trip per request): moto's S3 server process, and a throwaway
PostgreSQL cluster (Unix socket behind a loopback TCP proxy). The local file has no latency.

"Naive" is the same workload writing the whole state document per mutation (what apply did
before the journal), shown side by side with the journal + group commit keyplan uses.

    .venv/bin/python bench/state_backends.py [--keys 1000] [--latency-ms 20] [--cloud-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keyplan.apply.committer import StateCommitter  # noqa: E402
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
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pump(client_reader, server_writer, self.delay), pump(server_reader, client_writer, 0))


def _record(address: str, step: int) -> KeyRecord:
    return KeyRecord(
        address=address, algorithm="AES_256", usage="encrypt", source="software.s",
        materials=[MaterialVersion(version=1, handle=f"h{step}", fingerprint="kcv:00", created_at=datetime.now(UTC))],
    )


def run_apply(store: StateStore, keys: int, parallelism: int, cloud_ms: float, naive: bool) -> tuple[float, int]:
    state = store.read() or State()
    store.write(state)
    committer = StateCommitter(store, state)
    ready: queue.Queue[tuple[int, int] | None] = queue.Queue()
    for k in range(keys):
        ready.put((k, 0))
    remaining = [keys]
    lock = threading.Lock()

    def worker() -> None:
        while (item := ready.get()) is not None:
            k, step = item
            time.sleep(cloud_ms / 1000)  # the cloud call
            address = f"key.k{k:05d}"
            mutate = lambda s, a=address, st=step: s.keys.__setitem__(a, _record(a, st))  # noqa: E731
            committer.commit(mutate) if naive else committer.commit(mutate, key=address)
            if step + 1 < STEPS:
                ready.put((k, step + 1))
                continue
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    for _ in range(parallelism):
                        ready.put(None)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(parallelism)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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
    parser.add_argument("--naive-keys", type=int, default=100, help="keys for the naive runs (they are slow)")
    args = parser.parse_args()
    mutations = args.keys * STEPS
    print(f"{args.keys} keys x {STEPS} mutations, {args.cloud_ms:g} ms per cloud call, store latency "
          f"{args.latency_ms:g} ms, parallelism {args.parallelism}\n")
    print("| backend | way | keys | wall time | vs local | state writes | state cost per mutation |")
    print("|---|---|---|---|---|---|---|")
    floor = args.keys * STEPS * args.cloud_ms / 1000 / args.parallelism
    with backends(args.latency_ms / 1000) as stores:
        local_time = None
        for name, make in stores:
            for naive in (False, True):
                keys = args.naive_keys if naive else args.keys
                run_floor = keys * STEPS * args.cloud_ms / 1000 / args.parallelism
                store = make(("naive" if naive else "journal") + name.split()[0])
                seconds, writes = run_apply(store, keys, args.parallelism, args.cloud_ms, naive)
                store.backend.close()
                if name == "local" and not naive:
                    local_time = seconds
                versus = f"{seconds / (local_time * keys / args.keys):.2f}x" if local_time else "—"
                per = (seconds - run_floor) / (keys * STEPS) * 1000
                print(f"| {name} | {'naive: whole state per mutation' if naive else 'journal + group commit'} | "
                      f"{keys} | {seconds:.1f} s | {versus} | {writes} | {per:.2f} ms |")
    print(f"\nNo state at all would take {floor:.1f} s for {args.keys} keys ({mutations} cloud calls / parallelism).")


if __name__ == "__main__":
    main()
