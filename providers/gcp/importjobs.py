"""Cloud KMS import jobs: one ACTIVE job per key ring, import method and protection level,
shared by every import of a run (each job lasts three days), created when none is usable."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from keyplan.provider import ErrorKind, PrerequisiteRecord, ProviderError
from providers.common.errors import unless_not_found
from providers.gcp.client import KmsCalls
from providers.gcp.mapping import (
    KIND_IMPORT_JOB,
    KIND_KEY_RING,
    WRAPS_BY_IMPORT_METHOD,
    import_job_prerequisite_id,
    key_ring_prerequisite_id,
)
from providers.gcp.views import when

if TYPE_CHECKING:
    from google.cloud.kms_v1 import ImportJob, KeyManagementServiceClient

JOB_MARGIN = timedelta(minutes=10)  # an import job this close to expiry is not used for a new import
_NEVER = datetime.min.replace(tzinfo=UTC)


def job_record(job: ImportJob, prerequisite_id: str, attributes: dict[str, str]) -> PrerequisiteRecord:
    return PrerequisiteRecord(
        id=prerequisite_id,
        kind=KIND_IMPORT_JOB,
        remote_id=job.name,
        attributes=attributes,
        expires_at=when(job.expire_time),
    )


def lasts(job: ImportJob) -> bool:
    """Whether a job seen ACTIVE is still good for an import started now, by this machine's
    clock. Should Cloud KMS disagree, the import fails as expired and `expired` drops it."""
    expires = when(job.expire_time)
    return job.state.name == "ACTIVE" and expires is not None and expires - JOB_MARGIN > datetime.now(UTC)


def usable(job: ImportJob, method: str, level: str) -> bool:
    return (
        job.import_method.name == method
        and job.protection_level.name == level
        and job.state.name in ("ACTIVE", "PENDING_GENERATION")
    )


class ImportJobs:
    """The import jobs of one key ring. Thread-safe: job creation is serialised per import
    method and level, and the job last seen ACTIVE is remembered for the run."""

    def __init__(self, kms: KmsCalls, client: KeyManagementServiceClient, ring: str) -> None:
        self._kms = kms
        self._client = client
        self._ring = ring
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._jobs: dict[str, ImportJob] = {}  # "method:level" -> the ACTIVE job last seen, guarded by its lock

    def _lock(self, method: str, level: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(f"{method}:{level}", threading.Lock())

    def _read(self, name: str) -> ImportJob:
        return self._kms.call("read the import job", self._client.get_import_job, name, name=name)

    def _listed(self) -> list[ImportJob]:
        return self._kms.list("list import jobs", self._client.list_import_jobs, {"parent": self._ring, "page_size": 1000})

    def active(self, method: str, level: str, known: str | None) -> ImportJob:
        """An ACTIVE import job for this method and level: the known one while it lasts, else the
        longest-lived one in the key ring, else a new one (waited for until ACTIVE)."""
        with self._lock(method, level):
            cached = self._jobs.get(f"{method}:{level}")
            if cached is not None and (known is None or cached.name == known) and lasts(cached):
                return cached
            candidates: list[ImportJob] = []
            if known:
                found = unless_not_found(lambda: self._read(known))
                candidates += [found] if found is not None else []
            if not any(usable(job, method, level) for job in candidates):
                candidates = self._listed()
            choices = [job for job in candidates if usable(job, method, level)]
            if choices:
                job = max(choices, key=lambda j: when(j.expire_time) or _NEVER)
            else:
                job = self._create(method, level)
            job = self._generated(job)
            if job.state.name != "ACTIVE":  # expired while we looked: start afresh
                job = self._generated(self._create(method, level))
            self._jobs[f"{method}:{level}"] = job
            return job

    def _generated(self, job: ImportJob) -> ImportJob:
        return self._kms.wait(
            f"generating import job {job.name}",
            lambda: self._read(job.name),
            lambda j: j.state.name != "PENDING_GENERATION",
            job,
        )

    def _create(self, method: str, level: str) -> ImportJob:
        job_id = f"keyplan-{method.lower().replace('_', '-')}-{level.lower()}-{secrets.token_hex(3)}"
        return self._kms.call(
            "create an import job",
            self._client.create_import_job,
            self._ring,
            request={
                "parent": self._ring,
                "import_job_id": job_id,
                "import_job": {"import_method": method, "protection_level": level},
            },
        )

    def expired(self, job_name: str) -> bool:
        """Whether Cloud KMS says this job expired; an expired job is forgotten."""
        try:
            job = self._read(job_name)
        except ProviderError:
            return False
        if job.state.name != "EXPIRED":
            return False
        key = f"{job.import_method.name}:{job.protection_level.name}"
        with self._lock(job.import_method.name, job.protection_level.name):
            if key in self._jobs and self._jobs[key].name == job_name:
                del self._jobs[key]
        return True

    def records(self) -> tuple[PrerequisiteRecord, ...]:
        """The key ring and the longest-lived ACTIVE job per method and level, as prerequisites."""
        try:
            jobs = self._listed()
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return ()
            raise
        best: dict[str, ImportJob] = {}
        for job in jobs:
            method, level = job.import_method.name, job.protection_level.name
            if job.state.name != "ACTIVE" or method not in WRAPS_BY_IMPORT_METHOD:
                continue
            spec_id = import_job_prerequisite_id(self._ring, method, level)
            if spec_id not in best or (when(job.expire_time) or _NEVER) > (when(best[spec_id].expire_time) or _NEVER):
                best[spec_id] = job
        ring_id = key_ring_prerequisite_id(self._ring)
        records = [
            PrerequisiteRecord(id=ring_id, kind=KIND_KEY_RING, remote_id=self._ring, attributes={"name": self._ring})
        ]
        for spec_id, job in best.items():
            attributes = {
                "key_ring": self._ring,
                "import_method": job.import_method.name,
                "protection_level": job.protection_level.name,
            }
            records.append(job_record(job, spec_id, attributes))
        return tuple(records)
