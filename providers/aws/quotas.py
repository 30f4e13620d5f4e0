"""AWS KMS's documented default request quotas, as keyplan's operation classes.

AWS KMS sets a requests-per-second quota per API operation, per account and Region, shared by
every caller there (https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html;
docs/quotas.md records what was read and when). Each operation keyplan calls is its own class,
named after the operation, so `rate_limits = { CreateKey = 20 }` follows a quota increase.
"""

from __future__ import annotations

from keyplan.limits import RateClass

SOURCE = "AWS KMS Developer Guide, Request quotas (requests-per-second.html)"
SCOPE = "account and Region"

# operation -> documented default requests per second
DEFAULT_RATES: dict[str, float] = {
    "CreateKey": 5,
    "CreateAlias": 5,
    "UpdateAlias": 5,
    "DeleteAlias": 5,
    "GetParametersForImport": 5,
    "ImportKeyMaterial": 5,
    "DeleteImportedKeyMaterial": 5,
    "EnableKey": 5,
    "DisableKey": 5,
    "ScheduleKeyDeletion": 5,
    "CancelKeyDeletion": 5,
    "UpdateKeyDescription": 5,
    "RotateKeyOnDemand": 5,
    "TagResource": 10,
    "UntagResource": 5,
    "DescribeKey": 2000,
    "ListKeys": 100,
    "ListAliases": 100,
    "ListResourceTags": 100,
    "ListKeyRotations": 100,
}

READS = frozenset(op for op in DEFAULT_RATES if op.startswith(("Describe", "List", "Get")))

RATE_CLASSES: tuple[RateClass, ...] = tuple(
    RateClass(name=op, per_second=rate, operations=(op,), scope=SCOPE, source=SOURCE)
    for op, rate in DEFAULT_RATES.items()
)

# The KMS calls each contract operation makes (providers/aws/provider.py), for the plan's estimate.
QUOTA_COSTS: dict[str, dict[str, float]] = {
    "create_key": {"CreateKey": 1},
    "get_import_parameters": {"GetParametersForImport": 1},
    "import_material": {"ImportKeyMaterial": 1},
    "update_key": {"ListResourceTags": 1, "DescribeKey": 1, "ListAliases": 1, "CreateAlias": 1},  # one per alias added
    "promote_version": {"RotateKeyOnDemand": 1},
    "schedule_deletion": {"ScheduleKeyDeletion": 1},
    "cancel_deletion": {"CancelKeyDeletion": 1},
}

# How long a key just created may be missing from KMS's answers ("usually less than a few
# seconds, in some cases several minutes": AWS KMS Developer Guide, eventual consistency).
CONSISTENCY_WINDOW = 120.0
