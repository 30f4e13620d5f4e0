"""Bring your own key: import jobs (one RSA key each, ACTIVE after generation, EXPIRED after three
days) and ImportCryptoKeyVersion, which really unwraps the material with the job's private key."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.wrap import UnwrapError, WrapMethod, unwrap
from providers.emulation.app import Request, Response
from providers.gcp.emulator.bodies import ImportJobBody, ImportVersionBody, parse_body
from providers.gcp.emulator.core import GcpCore
from providers.gcp.emulator.errors import ApiError, invalid, precondition
from providers.gcp.emulator.material import format_problem
from providers.gcp.emulator.protos import (
    ALGORITHM,
    ALGORITHM_RULES,
    IMPORT_JOB_LIFETIME,
    IMPORT_METHOD,
    IMPORT_METHOD_WRAPS,
    PROTECTION_LEVEL,
    AlgorithmRule,
)
from providers.gcp.emulator.wire import (
    JOBS,
    KEYS,
    VERSIONS,
    b64,
    compile_filter,
    list_page,
    timestamp,
)


class ImportRoutes(GcpCore):
    def _import_version(self, request: Request, key_name: str) -> Response:
        body: ImportVersionBody = parse_body(ImportVersionBody, self._body(request))
        key = self._key(key_name)
        algorithm = ALGORITHM.parse(body.algorithm)
        rule = ALGORITHM_RULES.get(algorithm or "")
        if algorithm is None or rule is None:
            raise invalid("ImportCryptoKeyVersionRequest.algorithm is required and must be an importable algorithm.")
        if rule.purpose != key["purpose"]:
            raise invalid(f"Algorithm {algorithm} is not compatible with the purpose {key['purpose']} of {key_name}.")
        job_name = body.import_job
        if not job_name:
            raise invalid("ImportCryptoKeyVersionRequest.import_job is required.")
        wrapped_key, legacy = body.wrapped_key, body.rsa_aes_wrapped_key
        if (wrapped_key is None) == (legacy is None):
            raise invalid("Exactly one of wrapped_key and rsa_aes_wrapped_key must be set.")
        job = self._job(job_name)
        if job["state"] != "ACTIVE":
            raise precondition(f"ImportJob {job['name']} is not active, current state is: {job['state']}.")
        level = key["versionTemplate"]["protectionLevel"]
        if job["protectionLevel"] != level:
            raise invalid(
                f"ImportJob {job['name']} has protection level {job['protectionLevel']}, but {key_name} "
                f"has protection level {level}; they must be equal."
            )
        method, _ = IMPORT_METHOD_WRAPS[job["importMethod"]]
        if legacy is not None and not method.hybrid:
            raise invalid(f"rsa_aes_wrapped_key cannot be used with import method {job['importMethod']}.")
        if not method.hybrid and rule.kind is MaterialKind.RSA:
            raise invalid(
                f"Import method {job['importMethod']} cannot import RSA keys; use an RSA_OAEP_*_AES_256 method."
            )
        outcome = self._unwrap_outcome(job, method, rule, algorithm, wrapped_key or legacy or b"")
        with self.store.transaction():
            target = body.crypto_key_version
            if target:
                doc = self._reimport_target(key, target, algorithm)
                if outcome["state"] == "ENABLED" and doc.get("_digest") not in (None, outcome["digest"]):
                    outcome = {
                        "state": "IMPORT_FAILED",
                        "reason": "The key material does not match the material previously imported into this version.",
                    }
            else:
                key = self._key(key_name)
                version_id = str(key["_nextVersion"])
                key["_nextVersion"] += 1
                self.store.put(KEYS, key_name, key)
                doc = {
                    "name": f"{key_name}/cryptoKeyVersions/{version_id}",
                    "protectionLevel": level,
                    "algorithm": algorithm,
                    "createTime": timestamp(self.clock.now()),
                }
            doc.update({"state": "PENDING_IMPORT", "importJob": job["name"], "reimportEligible": True})
            for stale in ("destroyTime", "destroyEventTime", "importFailureReason"):
                doc.pop(stale, None)
            if outcome["state"] == "ENABLED":
                doc["_material"], doc["_fingerprint"] = outcome.pop("material"), outcome.pop("fingerprint")
                doc["_digest"] = outcome.pop("digest")
            doc["_outcome"] = outcome
            self.store.put(VERSIONS, doc["name"], doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _reimport_target(self, key: dict[str, Any], name: str, algorithm: str) -> dict[str, Any]:
        if name.rpartition("/cryptoKeyVersions/")[0] != key["name"]:
            raise invalid(f"crypto_key_version {name} does not belong to {key['name']}.")
        doc = self._version(name)
        if not doc.get("reimportEligible") or doc["state"] not in ("DESTROYED", "IMPORT_FAILED"):
            raise precondition(
                f"{name} is not eligible for re-import, current state is: {doc['state']}; only imported versions "
                "in DESTROYED or IMPORT_FAILED can be re-imported."
            )
        if doc["algorithm"] != algorithm:
            raise invalid(f"{name} has algorithm {doc['algorithm']}; a re-import must use the same algorithm.")
        return doc

    def _unwrap_outcome(
        self, job: dict[str, Any], method: WrapMethod, rule: AlgorithmRule, algorithm: str, blob: bytes
    ) -> dict[str, Any]:
        """Unwrap with the job's private key and check the format; the result never leaves the emulator."""
        # The emulator made this key itself: checking it again costs ~0.6 s for RSA-4096 per import.
        private_key = serialization.load_pem_private_key(
            job["_privateKey"].encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(private_key, rsa.RSAPrivateKey)
        now = timestamp(self.clock.now())
        try:
            material = unwrap(method, private_key, blob)
        except UnwrapError:
            return {
                "state": "IMPORT_FAILED",
                "reason": f"The wrapped key could not be unwrapped with ImportJob {job['name']}.",
            }
        problem = format_problem(rule, algorithm, material)
        if problem:
            return {"state": "IMPORT_FAILED", "reason": problem}
        raw = material.reveal()
        return {
            "state": "ENABLED",
            "importTime": now,
            "material": b64(raw),
            "fingerprint": fingerprint_material(rule.kind, material),
            "digest": hashlib.sha256(raw).hexdigest(),
        }

    def _create_import_job(self, request: Request, ring: str) -> Response:
        job_id = self._new_id(request, "importJobId", "ImportJob")
        self._ring(ring)
        body: ImportJobBody = parse_body(ImportJobBody, self._body(request))
        method = IMPORT_METHOD.parse(body.import_method)
        if method in (None, "IMPORT_METHOD_UNSPECIFIED"):
            raise invalid("ImportJob.import_method is required.")
        if method not in IMPORT_METHOD_WRAPS:
            raise invalid(f"Import method {method} is not supported.")
        level = PROTECTION_LEVEL.parse(body.protection_level)
        if level not in ("SOFTWARE", "HSM", "HSM_SINGLE_TENANT"):
            raise invalid("ImportJob.protection_level is required and must be SOFTWARE, HSM or HSM_SINGLE_TENANT.")
        name = f"{ring}/importJobs/{job_id}"
        now = self.clock.now()
        doc = {
            "name": name,
            "importMethod": method,
            "protectionLevel": level,
            "createTime": timestamp(now),
            "expireTime": timestamp(now + IMPORT_JOB_LIFETIME),
            "state": "PENDING_GENERATION",
        }
        with self.store.transaction():
            if self.store.get(JOBS, name) is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"ImportJob {name} already exists.")
            self.store.put(JOBS, name, doc)
        return self._ok(request, self._render_job(doc, self._ints(request)))

    def _get_import_job(self, request: Request, name: str) -> Response:
        return self._ok(request, self._render_job(self._job(name), self._ints(request)))

    def _list_import_jobs(self, request: Request, ring: str) -> Response:
        self._ring(ring)
        text = request.query_one("filter")
        keep = compile_filter(text)
        ints = self._ints(request)
        jobs = [self._settle_job(doc) for _, doc in self.store.list(JOBS, ring + "/importJobs/")]
        views = [self._render_job(doc, ints) for doc in jobs if keep(self._render_job(doc, False))]
        return self._ok(request, list_page(request, views, "importJobs", bool(text)))
