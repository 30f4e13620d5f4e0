"""What the benchmark scripts share: a cloud emulator in its own process, a timed `keyplan`
run, and the calls-per-operation summary."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
KEYPLAN = REPO / ".venv" / "bin" / "keyplan"


class Emulator:
    """`python -m providers.<kind>.emulator` on a free port with injected latency. The first line
    it prints is its URL; a TLS emulator prints `ca-cert: <path>` next."""

    def __init__(self, kind: str, data_dir: Path, latency_ms: float, *extra: str, tls: bool = False) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", f"providers.{kind}.emulator", "--port", "0", "--data-dir", str(data_dir),
             "--latency-ms", str(latency_ms), *extra],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.ca = Path(self.process.stdout.readline().strip().removeprefix("ca-cert: ")) if tls else None
        self._tls = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None

    def control(self, path: str, method: str = "GET") -> dict[str, object]:
        request = urllib.request.Request(self.url + path, method=method, data=b"{}" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30, context=self._tls) as response:
            return dict(json.loads(response.read()))

    def reset(self) -> None:
        self.control("/_emulator/stats/reset", "POST")

    def calls(self) -> dict[str, int]:
        calls = self.control("/_emulator/stats")["calls"]
        assert isinstance(calls, dict)
        return {str(operation): int(count) for operation, count in calls.items()}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def keyplan(workdir: Path, *args: str) -> float:
    """Run the real CLI as a subprocess; returns its wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(KEYPLAN), "-chdir", str(workdir), *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, KEYPLAN_KEYSTORE_PASSPHRASE="bench-passphrase"),
    )
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 2):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"keyplan {' '.join(args)} failed with {result.returncode}")
    return elapsed


def summarise(calls: dict[str, int]) -> str:
    return ", ".join(f"{op} {count}" for op, count in sorted(calls.items())) or "none"
