"""The narrow contracts between keyplan's core and the things it drives.

Two kinds of plugin exist, each found through an entry-point group (see `keyplan.registry`):

- a **key source** (`keyplan.sources`: software keystore, PKCS#11 HSM) generates material and
  wraps it for a cloud; the core only ever holds handles, fingerprints and wrapped bytes;
- a **provider** (`keyplan.providers`: one per cloud key management service) lists, creates,
  imports into, updates and deletes keys in one cloud.

Each plugin has a static half (`SourcePlugin`, `ProviderPlugin`: settings model, validation,
what it can do; no network) and a runtime half (`KeySource`, `Provider`) opened per run. Every
runtime operation takes one request model and returns one response model. The core checks
what a plugin answers instead of trusting it. Plugins report failures as `ProviderError` /
`SourceError`, classified so the apply walker knows what to retry; their messages never
contain key material.

Why this file is long: it is the whole contract, the one page a plugin author reads and the
only module a plugin needs from keyplan's core. Its sections (settings and the runtime context,
key sources, the static and the runtime halves of providers, errors) are request and response
models with little logic; splitting them would make plugins import from several places.
"""

from __future__ import annotations

import logging
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from keyplan.algorithms import Algorithm, KeyUsage
from keyplan.crypto.proofs import SignatureScheme
from keyplan.crypto.wrap import WrapMethod
from keyplan.diagnostics import Diagnostics, SourceRange
from keyplan.limits import CallLimits, RateClass, RateOverride, TargetLimits, apply_overrides

RESERVED_TAG_ADDRESS = "keyplan-address"
RESERVED_TAG_MANAGED_BY = "keyplan-managed-by"
RESERVED_TAGS = (RESERVED_TAG_ADDRESS, RESERVED_TAG_MANAGED_BY)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------------
# Settings and the runtime context
# ---------------------------------------------------------------------------------------------


class PluginSettings(BaseModel):
    """Base of every `source` and `provider` block's attributes (each plugin extends it)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, values: Any) -> Any:
        """`attribute = null` is the attribute left out, as in Terraform: its default, or the
        diagnostic of a required attribute that is missing."""
        if isinstance(values, dict):
            return {name: value for name, value in values.items() if value is not None}
        return values

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`true` is not 1: like Terraform, a bool is never taken for a number (pydantic would
        read `max_concurrency = true` as 1)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if not _accepts_bool(annotation) and _accepts_number(annotation):
                raise ValueError(f"a number is required, not {str(value).lower()}")
        return value


def _accepts_bool(annotation: Any) -> bool:
    return annotation is bool or any(_accepts_bool(a) for a in typing.get_args(annotation))


def _accepts_number(annotation: Any) -> bool:
    return annotation in (int, float) or any(_accepts_number(a) for a in typing.get_args(annotation))


class ProviderSettings(PluginSettings):
    endpoint: str | None = Field(
        default=None,
        description='A URL of a local or private endpoint, or "embedded" to run keyplan\'s emulator in-process.',
    )
    max_concurrency: int = Field(
        default=32,
        ge=1,
        le=64,
        description="Calls in flight to this provider at once (request quotas are kept by pacing, not by this).",
    )
    rate_limits: dict[str, RateOverride] = Field(
        default_factory=dict,
        description="Requests per second per operation class (from 0.01 to 1,000,000), overriding the cloud's "
        "documented defaults (for example after a quota increase): `rate_limits = { CreateKey = 20 }`. The classes "
        "and their defaults are listed under the provider and in docs/quotas.md.",
    )

    @classmethod
    def default_rate_classes(cls) -> tuple[RateClass, ...]:
        """Every operation class this provider declares, at its documented default rate."""
        return ()

    def declared_rate_classes(self) -> tuple[RateClass, ...]:
        """The classes for this block before overrides (a provider whose numbers depend on its
        settings, such as the kind of vault, overrides this)."""
        return self.default_rate_classes()

    def rate_classes(self) -> tuple[RateClass, ...]:
        """The classes this block's calls are admitted through, with `rate_limits` applied."""
        return apply_overrides(self.declared_rate_classes(), self.rate_limits, sensitive=self._sensitive_rates)

    def quota_cost(self, operation: str, *, aliases_added: int = 0) -> dict[str, float]:
        """The calls of each operation class that one contract operation (`create_key`,
        `import_material`, `update_key`, ...) usually makes at this cloud, for the plan's time
        estimate; `aliases_added` is how many aliases an `update_key` adds to the key, for a
        cloud that creates each with a call of its own. Default: nothing known."""
        return {}

    def consistency_window(self) -> float:
        """Seconds a key created or imported may stay missing from this cloud's listings (eventual
        consistency); within it the planner does not take a missing key for deleted. Default: 0."""
        return 0.0

    def paced(self, rate_class: RateClass) -> bool:
        """Whether calls of a class are paced from the start: always against the cloud itself;
        against another `endpoint` (an emulator, a private peer) only the classes the block
        sets in `rate_limits`, the others adapting once that endpoint throttles."""
        return self.endpoint is None or rate_class.name in self.rate_limits

    def call_limits(self, context: RuntimeContext) -> TargetLimits:
        """This block's limiters in the run."""
        return context.limits.target(context.address, self.rate_classes(), paced=self.paced)

    # The attributes derived from a sensitive value (`rate_limits`: its rates are then never shown;
    # `endpoint`, `vault_url` ...: messages say `shown(name)`). Set from the validation context
    # `{"sensitive": <the block's sensitive attribute names>}`.
    _sensitive_rates: bool = PrivateAttr(default=False)
    _sensitive: frozenset[str] = PrivateAttr(default=frozenset())
    # The settings every remote id of this provider is made of (a region, a vault's URL in a
    # key id): ids are shown in plans, state and the audit trail, so these cannot be
    # hidden and must not derive from a sensitive value.
    identity_settings: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _mark_sensitive_rates(self, info: ValidationInfo) -> ProviderSettings:
        context = info.context if isinstance(info.context, dict) else {}
        self._sensitive = frozenset(context.get("sensitive", ()))
        self._sensitive_rates = "rate_limits" in self._sensitive
        return self

    @field_validator("*")
    @classmethod
    def _identity_is_not_sensitive(cls, value: Any, info: ValidationInfo) -> Any:
        context = info.context if isinstance(info.context, dict) else {}
        if info.field_name in cls.identity_settings and info.field_name in context.get("sensitive", ()):
            raise ValueError(
                "it derives from a sensitive value, but it is part of every key id of this provider, which plans, "
                "state and the audit trail show; give it a value that is not sensitive"
            )
        return value

    def shown(self, name: str, value: object = None) -> str:
        """An attribute as a message may quote it: `(sensitive value)` when it derives from a
        sensitive variable. `value` stands for the attribute when it is given (a URL made from it)."""
        return "(sensitive value)" if name in self._sensitive else str(getattr(self, name) if value is None else value)

    @field_validator("rate_limits")
    @classmethod
    def _known_rate_classes(cls, value: dict[str, float]) -> dict[str, float]:
        names = sorted(c.name for c in cls.default_rate_classes())
        unknown = sorted(set(value) - set(names))
        if unknown and not names:
            raise ValueError("this provider declares no operation classes, so it takes no rate_limits")
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} {'is not an operation class' if len(unknown) == 1 else 'are not operation classes'}"
                f" of this provider; its classes are {', '.join(names)}"
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, endpoint: str | None) -> str | None:
        """Checked offline, so `validate` refuses what an SDK would later fail on."""
        if endpoint is None or endpoint == "embedded":
            return endpoint
        try:
            parts = urlsplit(endpoint)
            parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
        except ValueError:  # the reason may quote the value, which may be sensitive: not repeated
            raise ValueError('it is not a URL (an unbalanced [ or a port that is not a number from 0 to 65535); '
                             'write it like "https://kms.example.com:8443"') from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                'it must be an http:// or https:// URL with a host, like "https://kms.example.com:8443", '
                'or "embedded"'
            )
        if any(ch.isspace() for ch in endpoint):
            raise ValueError("it contains white space; remove it")
        return endpoint


@dataclass(frozen=True)
class RuntimeContext:
    """What a plugin may use at run time besides its settings."""

    address: str  # the block's address, KIND.NAME
    working_dir: Path  # the configuration directory
    data_dir: Path  # <working_dir>/.keyplan: embedded emulators, dev keystores
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("keyplan"))
    limits: CallLimits = field(default_factory=CallLimits)  # the run's limiters (keyplan.limits)


# ---------------------------------------------------------------------------------------------
# Key sources
# ---------------------------------------------------------------------------------------------


class SourceCapabilities(_Model):
    algorithms: frozenset[str]
    wrap_methods: frozenset[WrapMethod]
    exact_pkcs8: bool = True  # False when the source pads PKCS#8 before wrapping (SoftHSM)
    wraps_in_hardware: bool = False
    trusted_wrapping_only: bool = False  # wraps only under keys a security officer marked trusted
    trust_command: str | None = None  # the command that trusts a target's wrapping key (run as CMD ADDR --target T)
    notes: tuple[str, ...] = ()


class GenerateRequest(_Model):
    address: str  # key address, e.g. key.payments["prod"]
    version: int  # material version number within the key, from 1
    algorithm: Algorithm


class GeneratedMaterial(_Model):
    handle: str  # opaque reference the source understands; recorded in state
    fingerprint: str  # see keyplan.crypto.fingerprint
    created_at: datetime


class WrapRequest(_Model):
    handle: str
    algorithm: Algorithm
    method: WrapMethod
    wrapping_public_key: bytes  # DER SubjectPublicKeyInfo of the cloud's RSA wrapping key


class WrappedMaterial(_Model):
    method: WrapMethod
    blob: bytes  # ciphertext under the cloud's key; safe in memory, never persisted by keyplan


class MaterialInfo(_Model):
    handle: str
    fingerprint: str | None = None
    present: bool = True


class HoldingRequest(_Model):
    """Every material version the state records in a source, by handle: asked before a plan or an
    apply uses the source, so a store that went missing is an error, never a fresh empty one."""

    handles: tuple[str, ...] = ()


class Holding(_Model):
    missing: tuple[str, ...] = ()  # the handles the source does not hold
    reason: str = ""  # why, when the source knows (its store is gone, not only some entries)


class PublicKeyRequest(_Model):
    """The public half of an RSA or EC material version, read or derived where the material lives."""

    handle: str
    algorithm: Algorithm


class PublicKeyResponse(_Model):
    spki: bytes  # DER SubjectPublicKeyInfo


class MacRequest(_Model):
    """An HMAC, with the algorithm's hash, of a message under an HMAC material version."""

    handle: str
    algorithm: Algorithm
    message: bytes


class MacResponse(_Model):
    mac: bytes


class AesGcmRequest(_Model):
    """AES-GCM encryption of `plaintext` under an AES material version with a given IV. The
    source only ever encrypts: comparing ciphertexts under the same IV proves what decrypting
    would, and needs no decrypt permission on a token's key."""

    handle: str
    algorithm: Algorithm
    iv: bytes
    plaintext: bytes
    aad: bytes = b""


class AesGcmResponse(_Model):
    ciphertext: bytes
    tag: bytes  # 16 bytes


class AesKeyWrapRequest(_Model):
    """AES key wrap (RFC 3394; JWA A256KW, PKCS#11 CKM_AES_KEY_WRAP) of `plaintext` (at least 16
    bytes, a multiple of 8) under an AES material version. Key wrap is deterministic, so equal
    outputs for a fresh plaintext prove the same key; the source only ever wraps."""

    handle: str
    algorithm: Algorithm
    plaintext: bytes


class AesKeyWrapResponse(_Model):
    wrapped: bytes  # 8 bytes longer than the plaintext


class SignRequest(_Model):
    """A signature of `message` (hashed by the scheme's hash, outside the key) under the private
    half of an RSA or EC material version. ECDSA signatures are DER-encoded (r, s)."""

    handle: str
    algorithm: Algorithm
    message: bytes
    scheme: SignatureScheme


class SignResponse(_Model):
    signature: bytes


class SourceError(Exception):
    """A key source could not do what was asked (wrong PIN, missing token, missing handle …)."""

    def __init__(self, summary: str, detail: str = "", *, retryable: bool = False) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.retryable = retryable


class KeySource(ABC):
    """A source of key material, opened for one run. Implementations must be thread-safe."""

    address: str

    @abstractmethod
    def capabilities(self) -> SourceCapabilities: ...

    @abstractmethod
    def generate(self, request: GenerateRequest) -> GeneratedMaterial: ...

    @abstractmethod
    def wrap(self, request: WrapRequest) -> WrappedMaterial: ...

    @abstractmethod
    def describe(self, handle: str) -> MaterialInfo: ...

    def holding(self, request: HoldingRequest) -> Holding:
        """Which of the recorded handles the source no longer holds. Also the moment to open what
        protects the store (a passphrase, a PIN) when it exists, so a wrong one is reported by
        `plan`, before anyone confirms anything. Default: `describe` each handle."""
        return Holding(missing=tuple(h for h in request.handles if not self.describe(h).present))

    # Proofs of possession (`keyplan verify`): computed where the material lives, never
    # returning it. A source that cannot compute one raises SourceError saying why.

    def public_key(self, request: PublicKeyRequest) -> PublicKeyResponse:
        raise SourceError(f"{self.address} cannot show the public key of its material", "This key source offers no proofs.")

    def mac(self, request: MacRequest) -> MacResponse:
        raise SourceError(f"{self.address} cannot compute a MAC with its material", "This key source offers no proofs.")

    def aes_gcm_encrypt(self, request: AesGcmRequest) -> AesGcmResponse:
        raise SourceError(f"{self.address} cannot encrypt with its material", "This key source offers no proofs.")

    def aes_key_wrap(self, request: AesKeyWrapRequest) -> AesKeyWrapResponse:
        raise SourceError(f"{self.address} cannot wrap with its material", "This key source offers no key-wrap proofs.")

    def sign(self, request: SignRequest) -> SignResponse:
        raise SourceError(f"{self.address} cannot sign with its material", "This key source offers no signing proofs.")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and files."""


SourceSettingsT = TypeVar("SourceSettingsT", bound=PluginSettings)


class SourcePlugin(ABC, Generic[SourceSettingsT]):
    """The static half of a key source, generic over its settings model: the core validates a
    `source` block with `settings_model` and hands the plugin that very type."""

    kind: ClassVar[str]
    settings_model: type[SourceSettingsT]

    @abstractmethod
    def declared_capabilities(self, settings: SourceSettingsT) -> SourceCapabilities:
        """What the source can do, known without opening it (used by `validate`)."""

    @abstractmethod
    def open(self, settings: SourceSettingsT, context: RuntimeContext) -> KeySource: ...


# ---------------------------------------------------------------------------------------------
# Providers: static half
# ---------------------------------------------------------------------------------------------


class KeySpec(_Model):
    """What a provider needs to know about one desired key; built by the core from config."""

    address: str
    algorithm: Algorithm
    usage: KeyUsage
    labels: dict[str, str] = {}
    description: str | None = None
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    expiry: timedelta | None = None  # material expires this long after import; None = never
    rotation: timedelta | None = None  # a new material version is due this long after the last
    range: SourceRange | None = None


class WrapOffer(_Model):
    """One way a cloud accepts material for a given algorithm."""

    method: WrapMethod
    wrapping_key_bits: int  # RSA modulus size of the wrapping key


class PrerequisiteSpec(_Model):
    """A shared remote object imports depend on: a key ring, an import job, a key-exchange key.

    `id` is unique within the provider; every key that needs the same object names the same id,
    so the action graph holds one node for it.
    """

    id: str
    kind: str
    description: str
    attributes: dict[str, str] = {}


class PrerequisiteRecord(_Model):
    id: str
    kind: str
    remote_id: str
    attributes: dict[str, str] = {}
    expires_at: datetime | None = None


class KeyLifecycleSupport(_Model):
    """What a cloud can do over an imported key's life. Policy rules ask before requiring it; the
    planner refuses a rotation (`rotation {}`, `-replace`) where `rotation` is false, saying
    `rotation_instead`, and names `rotation_mechanism` in the plan where it is true."""

    rotation: bool = True  # new material versions can be imported and made current
    expiry: bool = True  # imported material can be given an expiry time
    rotation_mechanism: str = "new key version made current"  # what a rotation does at this cloud
    rotation_instead: str = ""  # when it cannot rotate: what to do instead
    # An import into a key that already holds material adds a version (rather than re-importing
    # the same material, which the cloud checks). Where it does, an import whose answer was lost
    # (a crash, a dropped connection) must be found before importing again, or the key ends up
    # with the same material twice.
    import_adds_version: bool = True


@dataclass(frozen=True)
class EmulatorOptions:
    """How `keyplan emulator KIND` runs a provider's local emulator."""

    data_dir: Path
    name: str = "main"  # the provider block's name: <data_dir>/<kind>-<name>.sqlite, as the embedded emulator keeps it
    port: int = 0  # 0: any free loopback port
    latency_ms: float = 0.0
    variant: str | None = None  # one of the plugin's `emulator_variants`; None: the first
    profile: str = "default"  # "realistic": the service's documented quotas enforced (docs/quotas.md)
    quota_scale: float = 1.0  # every quota multiplied by this (realistic profile)

    def serve_args(self) -> list[str]:
        """The options every emulator's command line takes (`providers.emulation.main.serve_main`)."""
        return [
            "--port", str(self.port), "--data-dir", str(self.data_dir), "--name", self.name,
            "--latency-ms", str(self.latency_ms), "--profile", self.profile, "--quota-scale", str(self.quota_scale),
        ]  # fmt: skip


ProviderSettingsT = TypeVar("ProviderSettingsT", bound=ProviderSettings)


class ProviderPlugin(ABC, Generic[ProviderSettingsT]):
    """The static half of a provider, generic over its settings model: the core validates a
    `provider` block with `settings_model` and hands every method that very type."""

    kind: ClassVar[str]
    settings_model: type[ProviderSettingsT]
    # The emulators the plugin can serve (`keyplan emulator KIND --kind VARIANT`), the default
    # first; empty when it has none.
    emulator_variants: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def check_key(self, settings: ProviderSettingsT, address: str, key: KeySpec) -> Diagnostics:
        """Static checks for one key at this target: algorithm and usage importable, labels legal
        (reserved tags included), rotation and expiry supported. `address` is the target's
        provider address. Diagnostics carry `key.range`."""

    @abstractmethod
    def wrap_offers(self, settings: ProviderSettingsT, algorithm: Algorithm) -> list[WrapOffer]:
        """Every accepted method for this algorithm, most preferred first; [] if not importable."""

    def prerequisites(self, settings: ProviderSettingsT, key: KeySpec, offer: WrapOffer) -> list[PrerequisiteSpec]:
        """Shared objects an import of `key` with `offer` needs. Default: none (the wrapping key
        belongs to the key itself)."""
        return []

    def metadata_fields(self, settings: ProviderSettingsT) -> frozenset[str]:
        """Which of labels, aliases, description, enabled this cloud keeps; the planner compares
        only these, so a cloud without aliases never shows a perpetual diff."""
        return frozenset({"labels", "aliases", "description", "enabled"})

    def lifecycle_support(self, settings: ProviderSettingsT, key: KeySpec) -> KeyLifecycleSupport:
        """Whether this cloud can rotate the imported material of `key` and let it expire.
        Default: both."""
        return KeyLifecycleSupport()

    def deletion_note(self, settings: ProviderSettingsT) -> str:
        """What 'schedule deletion' means at this cloud, shown in plans."""
        return "scheduled for deletion"

    def protection_note(self, settings: ProviderSettingsT) -> str | None:
        """The cloud's own guard against deleting a key, if it has one, shown in plans beside
        keyplan's `prevent_destroy` (which guards only what keyplan does). Default: none."""
        return None

    @abstractmethod
    def open(self, settings: ProviderSettingsT, context: RuntimeContext) -> Provider: ...

    def serve_emulator(self, options: EmulatorOptions) -> int:
        """Serve the local emulator on loopback until interrupted: the URL on the first line of
        standard output. Returns the exit code. Only called when `emulator_variants` is set."""
        raise NotImplementedError(f"{self.kind} has no emulator")


# ---------------------------------------------------------------------------------------------
# Providers: runtime half
# ---------------------------------------------------------------------------------------------


class KeyState(StrEnum):
    CREATING = "creating"
    # exists but holds no usable material: never imported, expired, its material deleted, or its
    # current version destroyed; importing the same material again restores it
    PENDING_IMPORT = "pending_import"
    ENABLED = "enabled"
    DISABLED = "disabled"
    PENDING_DELETION = "pending_deletion"  # deletion scheduled (of the key, or of its versions)
    DELETED = "deleted"  # soft-deleted, recoverable with cancel_deletion
    UNAVAILABLE = "unavailable"


class VersionState(StrEnum):
    PENDING_IMPORT = "pending_import"
    ENABLED = "enabled"
    DISABLED = "disabled"
    IMPORT_FAILED = "import_failed"
    DESTROY_SCHEDULED = "destroy_scheduled"
    DESTROYED = "destroyed"
    EXPIRED = "expired"
    PENDING_ROTATION = "pending_rotation"


class RemoteVersion(_Model):
    version_id: str
    state: VersionState
    current: bool = False  # the version in use: primary, current material or latest version
    imported: bool = True
    expires_at: datetime | None = None
    created_at: datetime | None = None


class RemoteKey(_Model):
    """A key as the cloud shows it now. `labels` excludes the reserved keyplan tags."""

    remote_id: str
    address: str | None = None  # decoded keyplan-address tag, when present
    managed_by: str | None = None  # keyplan-managed-by tag value
    algorithm: str | None = None  # keyplan algorithm name, when it maps to one
    external: bool = True  # material was imported (BYOK), not generated by the cloud
    state: KeyState
    enabled: bool
    labels: dict[str, str] = {}
    aliases: tuple[str, ...] = ()
    description: str | None = None
    expires_at: datetime | None = None  # when the current material expires
    current_version: str | None = None
    versions: tuple[RemoteVersion, ...] | None = None  # None: not listed by this inventory
    deletion_date: datetime | None = None


class InventoryRequest(_Model):
    managed_by: str  # value of keyplan-managed-by identifying this workspace
    known: dict[str, str] = {}  # remote_id -> address for everything the state holds at this target
    addresses: tuple[str, ...] = ()  # every address desired or known here (to decode tags)
    scan: bool = False  # also look for managed keys state does not know (adoption, orphans)
    with_versions: tuple[str, ...] = ()  # remote ids whose versions must be listed


class Inventory(_Model):
    keys: tuple[RemoteKey, ...] = ()
    missing: tuple[str, ...] = ()  # known remote ids the cloud no longer has at all
    prerequisites: tuple[PrerequisiteRecord, ...] = ()


class EnsurePrerequisiteRequest(_Model):
    spec: PrerequisiteSpec
    known: PrerequisiteRecord | None = None  # what state recorded last time


class CreateKeyRequest(_Model):
    address: str
    managed_by: str
    key: KeySpec
    prerequisites: dict[str, PrerequisiteRecord] = {}


class CreateKeyResponse(_Model):
    remote_id: str
    exists_remotely: bool = True  # False where the cloud creates the key on import
    state: KeyState = KeyState.PENDING_IMPORT


class ImportParametersRequest(_Model):
    remote_id: str
    key: KeySpec
    offer: WrapOffer
    prerequisites: dict[str, PrerequisiteRecord] = {}


class ImportParameters(_Model):
    method: WrapMethod
    wrapping_public_key: bytes  # DER SubjectPublicKeyInfo
    wrapping_key_bits: int
    token: str | None = None  # an import token (base64), where the cloud hands one out
    reference: str | None = None  # the import job or key-exchange key the wrapping key belongs to
    expires_at: datetime | None = None


class ImportPurpose(StrEnum):
    INITIAL = "initial"  # first material of a new key
    NEW_VERSION = "new_version"  # rotation: a new material version
    REIMPORT = "reimport"  # the same material again, after the cloud lost it


class ImportMaterialRequest(_Model):
    remote_id: str
    address: str
    managed_by: str
    key: KeySpec
    parameters: ImportParameters
    wrapped: bytes
    purpose: ImportPurpose
    reimport_version_id: str | None = None
    valid_to: datetime | None = None


class ImportMaterialResponse(_Model):
    remote_id: str
    version_id: str
    expires_at: datetime | None = None


class PromoteVersionRequest(_Model):
    remote_id: str
    version_id: str


class PromoteVersionResponse(_Model):
    promoted: bool  # False: this cloud makes an imported version current by itself, nothing was sent


class UpdateKeyRequest(_Model):
    remote_id: str
    address: str
    managed_by: str
    key: KeySpec  # desired labels, aliases, description, enabled
    current: RemoteKey | None = None


class ScheduleDeletionRequest(_Model):
    remote_id: str
    window_days: int | None = None


class ScheduleDeletionResponse(_Model):
    deletion_date: datetime | None = None


class CancelDeletionRequest(_Model):
    remote_id: str


class CancelDeletionResponse(_Model):
    enabled: bool  # whether the restored key is enabled (most clouds restore a key disabled)


class DescribeKeyRequest(_Model):
    remote_id: str


class DescribeKeyResponse(_Model):
    key: RemoteKey | None  # None: the cloud has no such key


class DiscoverRequest(_Model):
    """Every imported (bring-your-own-key) key visible to the provider, managed by keyplan or not."""


class DiscoverResponse(_Model):
    keys: tuple[RemoteKey, ...]


class ProofMethod(StrEnum):
    """How a target showed (or would show) which material it holds."""

    PUBLIC_KEY = "public_key"  # the cloud's public key equals the source's
    SIGNATURE = "signature"  # ... and the cloud's signature of a fresh challenge verifies under the source's
    MAC = "mac"  # the cloud's MAC of a fresh challenge equals the source's
    ENCRYPTION = "encryption"  # AES-GCM: the cloud's ciphertext equals the source's under the same IV, and back
    KEY_WRAP = "key_wrap"  # AES key wrap (RFC 3394): the cloud's wrap of a fresh challenge equals the source's, and back
    REIMPORT = "reimport"  # the cloud accepted the same material again as this key's (it refuses any other)
    NONE = "none"  # no proof was possible


class Verdict(StrEnum):
    PROVEN = "proven"
    MISMATCH = "mismatch"
    CANNOT_PROVE = "cannot_prove"


class MaterialProofRequest(_Model):
    """Prove that one imported version of a remote key holds one material version of the source."""

    remote_id: str
    address: str
    managed_by: str
    key: KeySpec
    material_version: int
    fingerprint: str
    remote_version_id: str | None = None  # the version to prove; None: the key's current material
    challenge: bytes  # random, fresh for every run: what the cloud and the source both sign, MAC or encrypt
    offer: WrapOffer | None = None  # how the source can send this material here (for re-import proofs)
    valid_to: datetime | None = None  # re-import proofs: the expiry to keep (or set) on the material


class MaterialProof(_Model):
    verdict: Verdict
    method: ProofMethod
    detail: str  # what was compared, or why it could not be; never anything derived from material
    remote_version_id: str | None = None  # the version the cloud proved (re-import proofs name it)
    expires_at: datetime | None = None
    # cannot_prove because the cloud offers no proof for this kind of key at all (not because an
    # operation was refused, a block is missing or the key is unusable now): nothing to fix
    by_design: bool = False


class MaterialWrapper(Protocol):
    """Wraps one material version for a target's import parameters, inside its key source."""

    def __call__(self, parameters: ImportParameters) -> WrappedMaterial: ...


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"  # throttling, 5xx, timeouts: retry with backoff
    CONFLICT = "conflict"  # name held, concurrent change, invalid state
    NOT_FOUND = "not_found"
    AUTH = "auth"  # missing or rejected credentials, permission denied
    UNREACHABLE = "unreachable"  # endpoint cannot be reached
    PARAMETERS_EXPIRED = "parameters_expired"  # import token / job expired: fetch fresh ones and re-wrap
    FATAL = "fatal"  # anything else; not retried


class ProviderError(Exception):
    """A classified failure of a provider call. `summary` and `detail` are shown to the user;
    `detail` ends with how to fix it. Never include request bodies (they hold wrapped material)."""

    def __init__(
        self,
        kind: ErrorKind,
        summary: str,
        detail: str = "",
        *,
        code: str | None = None,
        remote_id: str | None = None,
        throttled: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(summary)
        self.kind = kind
        self.summary = summary
        self.detail = detail
        self.code = code
        self.remote_id = remote_id
        self.throttled = throttled  # the cloud's throttling answer: the call was not carried out
        self.retry_after = retry_after  # seconds the cloud asked to wait (Retry-After), when it said

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.RETRYABLE


class PluginAnswerError(Exception):
    """A plugin answered something the contract does not allow (the wrong response model, a
    prerequisite other than the one asked for, material wrapped with another method). This is a
    fault in the plugin, not in keyplan nor in the user's configuration; keyplan reports it as
    a diagnostic naming the plugin."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"{plugin}: {problem}")
        self.plugin = plugin  # the plugin's address, e.g. the provider block it was opened for
        self.problem = problem

    @property
    def summary(self) -> str:
        return f"{self.plugin} gave an answer keyplan cannot use"

    @property
    def detail(self) -> str:
        return (
            f"{self.problem}. This is a fault in the plugin behind {self.plugin}, not in the configuration: "
            "report it to the plugin's authors with this message. Nothing was recorded for this step; "
            "run `keyplan plan` to see what is left."
        )


class Provider(ABC):
    """One cloud account/project/vault as configured in one `provider` block, opened for a run.
    Implementations must be thread-safe: the apply walker calls them from several threads."""

    address: str

    @abstractmethod
    def inventory(self, request: InventoryRequest) -> Inventory:
        """Bulk listing (paginated; concurrent per-key calls only where the cloud has no bulk form)."""

    @abstractmethod
    def ensure_prerequisite(self, request: EnsurePrerequisiteRequest) -> PrerequisiteRecord:
        """Idempotent: find the object, reuse it while usable, create or replace it otherwise."""

    @abstractmethod
    def create_key(self, request: CreateKeyRequest) -> CreateKeyResponse: ...

    @abstractmethod
    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters: ...

    @abstractmethod
    def import_material(self, request: ImportMaterialRequest) -> ImportMaterialResponse: ...

    @abstractmethod
    def promote_version(self, request: PromoteVersionRequest) -> PromoteVersionResponse:
        """Make an imported version current (where importing a version does not already)."""

    @abstractmethod
    def update_key(self, request: UpdateKeyRequest) -> RemoteKey: ...

    @abstractmethod
    def schedule_deletion(self, request: ScheduleDeletionRequest) -> ScheduleDeletionResponse: ...

    @abstractmethod
    def cancel_deletion(self, request: CancelDeletionRequest) -> CancelDeletionResponse: ...

    @abstractmethod
    def describe(self, request: DescribeKeyRequest) -> DescribeKeyResponse:
        """One key by id; its `key` is None when the cloud does not have it."""

    def discover(self, request: DiscoverRequest) -> DiscoverResponse:
        """Every imported (BYOK) key visible to this provider, managed by keyplan or not."""
        return DiscoverResponse(keys=())

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        """The strongest proof this cloud allows that the remote version holds the witness's
        material, computed on the source side through `witness` (the material never leaves its
        source). A cloud refusing an operation the proof needs (key disabled, usage) is a
        CANNOT_PROVE verdict with the reason, never an exception, and never a changed key."""
        return MaterialProof(
            verdict=Verdict.CANNOT_PROVE, method=ProofMethod.NONE, detail=f"{self.address} offers no proof of material"
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop embedded emulators, close clients."""


class MaterialWitness:
    """The source side of a proof: one material version, reachable only through operations that
    keep it inside its source. Providers call it while proving; it raises SourceError."""

    def __init__(self, source: KeySource, handle: str, algorithm: Algorithm, fingerprint: str) -> None:
        self._source = source
        self._handle = handle
        self.algorithm = algorithm
        self.fingerprint = fingerprint

    def __repr__(self) -> str:
        return f"MaterialWitness({self._source.address}, {self.fingerprint})"

    def public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo of the material's public half."""
        return self._source.public_key(PublicKeyRequest(handle=self._handle, algorithm=self.algorithm)).spki

    def mac(self, message: bytes) -> bytes:
        return self._source.mac(MacRequest(handle=self._handle, algorithm=self.algorithm, message=message)).mac

    def aes_gcm_encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes]:
        """(ciphertext, 16-byte tag)."""
        response = self._source.aes_gcm_encrypt(
            AesGcmRequest(handle=self._handle, algorithm=self.algorithm, iv=iv, plaintext=plaintext, aad=aad)
        )
        return response.ciphertext, response.tag

    def aes_key_wrap(self, plaintext: bytes) -> bytes:
        """RFC 3394 key wrap of `plaintext` under the material."""
        return self._source.aes_key_wrap(
            AesKeyWrapRequest(handle=self._handle, algorithm=self.algorithm, plaintext=plaintext)
        ).wrapped

    def sign(self, message: bytes, scheme: SignatureScheme) -> bytes:
        """A signature of `message` by the material's private half (ECDSA: DER-encoded)."""
        return self._source.sign(
            SignRequest(handle=self._handle, algorithm=self.algorithm, message=message, scheme=scheme)
        ).signature

    def wrap(self, method: WrapMethod, wrapping_public_key: bytes) -> bytes:
        """The material wrapped for a cloud, as for an import (re-import proofs)."""
        return self._source.wrap(
            WrapRequest(handle=self._handle, algorithm=self.algorithm, method=method, wrapping_public_key=wrapping_public_key)
        ).blob


AnswerT = TypeVar("AnswerT")


def checked_answer(plugin: str, operation: Callable[..., Any], answer: AnswerT) -> AnswerT:
    """`answer` if it is the response model `operation` declares, else a `PluginAnswerError`."""
    expected = _answer_type(operation)
    if not isinstance(answer, expected):
        raise PluginAnswerError(
            plugin, f"{operation.__name__} answered {type(answer).__name__}, expected {expected.__name__}"
        )
    return answer


@cache
def _answer_type(operation: Callable[..., Any]) -> type:
    """The response model the contract declares for an operation (`Provider.create_key` -> CreateKeyResponse)."""
    answer = typing.get_type_hints(operation)["return"]
    if not isinstance(answer, type):
        raise TypeError(f"{operation.__qualname__} does not declare one response model")
    return answer
