"""What an apply proves, through the providers' `prove_material` as `keyplan verify` does: which
version an interrupted apply already imported (`found_version`, asked by the import handler
before it imports again), and `apply -verify`'s proof of each import (`verify_import`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from keyplan.apply.context import ActionFailed, ApplyContext
from keyplan.plan.model import ImportMaterial, VerifyMaterial
from keyplan.provider import Verdict
from keyplan.verification import ProofTask, Verifier

log = logging.getLogger("keyplan")


@dataclass(frozen=True)
class FoundVersion:
    version_id: str
    how: str  # how it was found to hold the material


def found_version(context: ApplyContext, action: ImportMaterial) -> FoundVersion | None:
    """The version among `unrecorded_versions` that already holds the material to import, proven
    through the provider's `prove_material` (as `keyplan verify` proves); None when none does and
    the import must be made. A version proven to hold other material stops the key: something
    besides keyplan imported into a key keyplan manages, whether or not another version holds the
    material. Where the cloud offers no proof for this kind of key at all, a single unrecorded
    version is taken as the lost import's (keyplan is the only importer of the keys it creates);
    several are imported past, and said so."""
    address, target, args = action.address, action.target, action.args
    remote_id = context.target_record(address, target).remote_id
    state = context.committer.read(lambda state: state.model_copy(deep=True))
    verifier = Verifier(context.calls.session, state, now=context.now())
    unprovable = 0
    proven: FoundVersion | None = None
    for version_id in args.unrecorded_versions:
        task = ProofTask(
            address=address, target=target, remote_id=remote_id, material_version=args.version,
            remote_version_id=version_id,
        )
        with context.calls.admitted(target):
            result = verifier.prove(task)
        if result.verdict is Verdict.PROVEN:
            proven = proven or FoundVersion(version_id, f"proven by {result.method.value}")
        elif result.verdict is Verdict.MISMATCH:
            raise ActionFailed(
                f"{target} holds a version keyplan did not import in {address}'s key",
                f"Version {version_id} of {remote_id} holds other material than v{args.version} "
                f"({result.detail}), and state does not record it. keyplan stops here rather than add its "
                "material next to it. Find out who imported it; destroy or disable that version in the cloud where "
                "it allows, or take the key out of keyplan (`keyplan state rm`), then apply again.",
            )
        elif result.by_design:
            unprovable += 1
    if proven is not None:
        return proven
    if unprovable == len(args.unrecorded_versions) == 1:
        version_id = args.unrecorded_versions[0]
        return FoundVersion(version_id, "this kind of key offers no proof; it is the one version state did not record")
    log.warning(
        "%s at %s: %d version(s) state does not record could not be shown to hold material v%d; importing it",
        address, target, len(args.unrecorded_versions), args.version,
    )
    return None



def verify_import(context: ApplyContext, action: VerifyMaterial) -> None:
    """`apply -verify`: prove the version just imported holds the material (as `keyplan verify`
    does), under the target's admission like any call. As for `keyplan verify`, only a proof, or
    a proof the cloud offers for no key of this kind (reported), lets the apply go on: a mismatch
    fails the action, and so does a proof that was refused (the key's later steps are skipped)."""
    address, target, version = action.address, action.target, action.args.version
    target_record, imported = context.imported(address, target, version, "proving it")
    task = ProofTask(
        address=address,
        target=target,
        remote_id=target_record.remote_id,
        material_version=version,
        remote_version_id=imported.remote_version_id or None,
        expires_at=imported.expires_at,
    )
    state = context.committer.read(lambda state: state.model_copy(deep=True))
    with context.calls.admitted(target):
        result = Verifier(context.calls.session, state, now=context.now()).prove(task)
    outcome = f"{result.verdict.value} by {result.method.value}: {result.detail}"
    if result.verdict is Verdict.MISMATCH:
        raise ActionFailed(
            f"{target} does not hold the material v{version} just imported",
            f"{result.detail}. The key {result.remote_id} holds other material than {result.fingerprint}; do not "
            "rely on it, and find out how it changed before applying again.",
        )
    if result.verdict is Verdict.CANNOT_PROVE and not result.by_design:
        raise ActionFailed(
            f"cannot prove that {target} holds the material v{version} just imported",
            f"{result.detail}. The import itself succeeded and is recorded. Let the proof run (see why above) and "
            "apply again, or apply without -verify.",
        )
    context.hooks.mutated(action, outcome, target_record.remote_id)
