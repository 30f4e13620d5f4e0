"""Key Vault's and Managed HSM's documented transaction limits, as keyplan's operation classes.

Key Vault counts key transactions per vault and region in 10-second windows
(https://learn.microsoft.com/azure/key-vault/general/service-limits; docs/quotas.md): creating an
HSM-protected key (an import creates one) is allowed 10 times per 10 s whatever its type; all
other transactions share a weighted budget whose size depends on the key type (2,000 per 10 s
for RSA 2,048-bit and EC HSM keys, 500 for RSA 3,072, 250 for RSA 4,096). keyplan paces the
other transactions at the RSA 4,096-bit figure, the one that holds whatever keys the vault has,
and adapts upward only within it; a subscription's vaults together get five times a vault's
budget. A Managed HSM documents no per-operation request quota for key management, only the
hardware throughput of its partitions, so keyplan starts higher there and relies on the 429
answers to adapt.
"""

from __future__ import annotations

from keyplan.limits import RateClass

VAULT_SOURCE = "Azure Key Vault service limits (key-vault/general/service-limits), resource type vault"
HSM_SOURCE = "Azure Managed HSM scaling guidance (key-vault/managed-hsm/scaling-guidance)"
CREATE = "create"
OTHER = "other"
CREATE_OPERATIONS = ("CreateKey", "ImportKey")
OTHER_OPERATIONS = (
    "GetKey",
    "GetKeys",
    "GetKeyVersions",
    "GetDeletedKey",
    "GetDeletedKeys",
    "UpdateKey",
    "DeleteKey",
    "RecoverDeletedKey",
    "PurgeDeletedKey",
    "Encrypt",
    "Decrypt",
    "Sign",
    "Verify",
    "WrapKey",
    "UnwrapKey",
)

VAULT_CLASSES: tuple[RateClass, ...] = (
    RateClass(
        name=CREATE, per_second=10 / 10, operations=CREATE_OPERATIONS, scope="vault and region", source=VAULT_SOURCE
    ),
    RateClass(
        name=OTHER, per_second=250 / 10, operations=OTHER_OPERATIONS, scope="vault and region", source=VAULT_SOURCE
    ),
)
# What a vault itself counts, in weighted units (the emulator's realistic profile enforces these).
# "The throttling thresholds are weighted, and enforcement is on their sum": per 10 s a vault takes
# 4,000 other transactions on RSA 2,048-bit software keys, or 2,000 on RSA 2,048-bit HSM keys, or
# 250 on RSA 4,096-bit HSM keys (each costing 4,000 / 250 = 16 units), or a mix whose units add up
# to 4,000; and 20 software-key or 10 HSM-key creations (2 units each). keyplan's own pacing above
# is the dearest case of each: what holds whatever keys the vault has.
VAULT_COUNTED_CLASSES: tuple[RateClass, ...] = (
    RateClass(
        name=CREATE, per_second=20 / 10, operations=CREATE_OPERATIONS, scope="vault and region", source=VAULT_SOURCE
    ),
    RateClass(
        name=OTHER, per_second=4000 / 10, operations=OTHER_OPERATIONS, scope="vault and region", source=VAULT_SOURCE
    ),
)
# Other transactions allowed per 10 s by key family and size: (HSM key, software key)
_OTHER_LIMITS: dict[tuple[str, int], tuple[int, int]] = {
    ("RSA", 2048): (2000, 4000),
    ("RSA", 3072): (500, 1000),
    ("RSA", 4096): (250, 500),
    ("EC", 0): (2000, 4000),  # every curve
}


def transaction_cost(rate_class: str, family: str | None, bits: int, hsm: bool) -> float:
    """Units of a vault's weighted budget one transaction spends (VAULT_COUNTED_CLASSES): a
    creation 2 for an HSM key, 1 for a software key; another transaction 4,000 / the allowance of
    the key it touches. A transaction that touches no key of a known type (a listing, a missing
    key) is counted as the cheapest."""
    if rate_class == CREATE:
        return 2.0 if hsm else 1.0
    limits = _OTHER_LIMITS.get((family, bits if family == "RSA" else 0)) if family else None
    if limits is None:
        return 1.0
    return 4000 / (limits[0] if hsm else limits[1])


MANAGED_HSM_CLASSES: tuple[RateClass, ...] = (
    RateClass(name=CREATE, per_second=10, operations=CREATE_OPERATIONS, scope="HSM pool", source=HSM_SOURCE),
    RateClass(name=OTHER, per_second=200, operations=OTHER_OPERATIONS, scope="HSM pool", source=HSM_SOURCE),
)

# The Key Vault transactions each contract operation makes (providers/azure/provider.py), for
# the plan's estimate: an import creates the key; the update right after it sends nothing.
QUOTA_COSTS: dict[str, dict[str, float]] = {
    "ensure_prerequisite": {CREATE: 1, OTHER: 1},
    "import_material": {CREATE: 1},
    "update_key": {OTHER: 1},
    "schedule_deletion": {OTHER: 1},
    "cancel_deletion": {OTHER: 1},
}

# The SDK call each action of the provider makes (VaultCalls names actions in plain words).
_ACTIONS = (
    ("listing deleted", "GetDeletedKeys"),
    ("listing the versions", "GetKeyVersions"),
    ("listing", "GetKeys"),
    ("reading a deleted", "GetDeletedKey"),
    ("reading", "GetKey"),
    ("creating", "CreateKey"),
    ("importing", "ImportKey"),
    ("updating", "UpdateKey"),
    ("deleting", "DeleteKey"),
    ("recovering", "RecoverDeletedKey"),
)


def operation_of(action: str) -> str:
    """The Key Vault operation an action of the provider ("reading key x") performs."""
    return next((operation for prefix, operation in _ACTIONS if action.startswith(prefix)), "GetKey")


def is_read(operation: str) -> bool:
    return operation.startswith("Get")
