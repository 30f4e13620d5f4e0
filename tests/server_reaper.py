"""Stops the servers that the test workers of one run share (tests/state_servers.py) once no
worker that used them is alive, whether the run ended, was interrupted or crashed, and removes
the run's directory: `python -I tests/server_reaper.py DIRECTORY`. Standard library only, so that
it starts in a few milliseconds."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def started(pid: int) -> str | None:
    """When process `pid` started (its start time in /proc), None once it ended (or is a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def stop(server: dict[str, Any]) -> None:
    if "pid" in server and started(server["pid"]) == server.get("started"):
        os.kill(server["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while started(server["pid"]) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if started(server["pid"]) is not None:
            os.kill(server["pid"], signal.SIGKILL)
    if "stop" in server:
        subprocess.run(server["stop"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    if "directory" in server:
        shutil.rmtree(server["directory"], ignore_errors=True)


def reap(root: Path) -> None:
    while True:
        time.sleep(0.5)
        with open(root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            workers = {int(path.name): path.read_text() for path in (root / "workers").iterdir()}
            if any(started(pid) == since for pid, since in workers.items()):
                continue
            for record in sorted(root.glob("*.json")):
                stop(json.loads(record.read_text()))
            shutil.rmtree(root, ignore_errors=True)
            return


if __name__ == "__main__":
    reap(Path(sys.argv[1]))
