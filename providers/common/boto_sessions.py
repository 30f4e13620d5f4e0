"""boto3 sessions that share botocore's data loader.

A boto3 session normally gets a data loader of its own, which parses botocore's JSON data again
for its first client: the service's model and the endpoint rules of every partition, about 60 ms
of CPU per client. keyplan makes one session per AWS provider block and per S3 state backend
(each with its own credentials), and a process that runs keyplan many times (the test suite,
which drives the CLI in-process) makes thousands. The data is the same for all of them, read
only once loaded, and the loader caches it, so sessions with the same data path share one loader.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_LOCK = threading.Lock()
_LOADERS: dict[str | None, Any] = {}  # botocore's `data_path` setting -> its loader


class _SearchPaths(list[str]):
    """A shared loader's search path: boto3 appends its own data directory for every session it
    makes, and a shared loader keeps it once."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


def _loader(data_path: str | None) -> Any:
    """The loader botocore would make for this `data_path` (AWS_DATA_PATH), made once."""
    from botocore.loaders import Loader

    with _LOCK:
        if data_path not in _LOADERS:
            extra = data_path.split(os.pathsep) if data_path else []
            paths = _SearchPaths(os.path.expanduser(os.path.expandvars(path)) for path in extra)
            _LOADERS[data_path] = Loader(extra_search_paths=paths)
        return _LOADERS[data_path]


def new_session(**options: Any) -> Any:
    """`boto3.session.Session(**options)`, with the process's shared data loader."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    # Resolved when boto3 first asks for it, after it applied the session's profile.
    core.lazy_register_component("data_loader", lambda: _loader(core.get_config_variable("data_path")))
    return boto3.session.Session(botocore_session=core, **options)
