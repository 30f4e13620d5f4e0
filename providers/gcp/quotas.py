"""Cloud KMS's documented default request quotas, as keyplan's operation classes.

Cloud KMS counts requests per minute per calling project (https://cloud.google.com/kms/quotas;
docs/quotas.md): read requests (get, list of key rings, keys, versions, import jobs) and write
requests (create, patch, updatePrimaryVersion, destroy, restore, import). keyplan paces each
class at its per-minute quota spread over the minute.
"""

from __future__ import annotations

from keyplan.limits import RateClass

SOURCE = "Cloud KMS documentation, Quotas (cloud.google.com/kms/quotas)"
SCOPE = "calling project"
READ = "read"
WRITE = "write"

RATE_CLASSES: tuple[RateClass, ...] = (
    RateClass(
        name=READ,
        per_second=300 / 60,
        operations=(
            "get_key_ring",
            "list_key_rings",
            "get_crypto_key",
            "list_crypto_keys",
            "get_crypto_key_version",
            "list_crypto_key_versions",
            "get_import_job",
            "list_import_jobs",
        ),
        scope=SCOPE,
        source=SOURCE,
        burst=5,
    ),
    RateClass(
        name=WRITE,
        per_second=60 / 60,
        operations=(
            "create_key_ring",
            "create_crypto_key",
            "update_crypto_key",
            "update_crypto_key_primary_version",
            "update_crypto_key_version",
            "destroy_crypto_key_version",
            "restore_crypto_key_version",
            "import_crypto_key_version",
            "create_import_job",
        ),
        scope=SCOPE,
        source=SOURCE,
        burst=1,
    ),
)

# The Cloud KMS requests each contract operation makes (providers/gcp/provider.py), for the
# plan's estimate; import parameters come from the shared import job, read once per run.
QUOTA_COSTS: dict[str, dict[str, float]] = {
    "ensure_prerequisite": {READ: 1, WRITE: 1},
    "create_key": {WRITE: 1},
    "import_material": {WRITE: 2, READ: 1},  # import, make it primary, read the version
    "update_key": {WRITE: 1, READ: 1},
    "promote_version": {WRITE: 1},
    "schedule_deletion": {READ: 1, WRITE: 1},
    "cancel_deletion": {READ: 1, WRITE: 1},
}


def operation_of(method: object) -> str:
    """The SDK method's name (`get_crypto_key`), the operation its class is found by."""
    return str(getattr(method, "__name__", "unknown"))


def is_read(operation: str) -> bool:
    return operation.startswith(("get_", "list_"))
