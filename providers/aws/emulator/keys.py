"""KMS key lifecycle and tags: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, Enable/DisableKey,
ScheduleKeyDeletion, CancelKeyDeletion, TagResource, UntagResource, ListResourceTags."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from providers.aws.emulator.bodies import (
    CreateKeyBody,
    DescribeKeyBody,
    KeyReference,
    ListKeysBody,
    ListResourceTagsBody,
    ScheduleKeyDeletionBody,
    Tag,
    TagResourceBody,
    UntagResourceBody,
    UpdateKeyDescriptionBody,
)
from providers.aws.emulator.core import KmsCore
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.material import (
    generate_material,
    material_record,
)
from providers.aws.emulator.wire import (
    KEY_SPECS,
    MAX_TAGS,
    marker_page,
)


class KeyRoutes(KmsCore):
    @staticmethod
    def _validate_tags(tags: list[Tag]) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = []
        seen: set[str] = set()
        for tag in tags:
            key, value = tag.tag_key, tag.tag_value
            if not 1 <= len(key) <= 128:
                raise validation(
                    "1 validation error detected: Value at 'tags.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128"
                )
            if len(value) > 256:
                raise validation(
                    "1 validation error detected: Value at 'tags.member.tagValue' failed to satisfy constraint: Member must have length less than or equal to 256"
                )
            if key.lower().startswith("aws:"):
                raise KmsError("TagException", "Tags beginning with aws: are reserved")
            if key in seen:
                raise KmsError("TagException", "Duplicate tag keys")
            seen.add(key)
            result.append((key, value))
        return result

    @staticmethod
    def _merge_tags(existing: list[list[str]], new: list[tuple[str, str]]) -> list[list[str]]:
        merged = {k: v for k, v in existing}
        for key, value in new:
            merged[key] = value
        if len(merged) > MAX_TAGS:
            raise KmsError("TagException", "Too many tags")
        return [[k, v] for k, v in merged.items()]

    def _op_CreateKey(self, region: str, body: CreateKeyBody) -> dict[str, Any]:
        spec_name = body.key_spec or body.customer_master_key_spec or "SYMMETRIC_DEFAULT"
        spec = KEY_SPECS.get(spec_name)
        if spec is None:
            raise validation(f"KeySpec {spec_name} is not supported by this emulator")
        usage = body.key_usage or spec.usages[0]
        if usage not in spec.usages:
            raise validation(f"KeyUsage {usage} is not compatible with KeySpec {spec_name}")
        origin = body.origin or "AWS_KMS"
        if origin not in ("AWS_KMS", "EXTERNAL"):
            raise KmsError("UnsupportedOperationException", f"Origin {origin} is not supported by this emulator")
        if body.multi_region:
            raise KmsError("UnsupportedOperationException", "Multi-Region keys are not supported by this emulator")
        description = body.description or ""
        if len(description) > 8192:
            raise validation("Description must be at most 8192 characters")
        tags = self._merge_tags([], self._validate_tags(body.tags))
        key_id = str(uuid.uuid4())
        now = self._now()
        key: dict[str, Any] = {
            "id": key_id,
            "arn": self._arn(region, key_id),
            "region": region,
            "created": now.isoformat(),
            "description": description,
            "spec": spec_name,
            "usage": usage,
            "origin": origin,
            "enabled": True,
            "deletion_date": None,
            "pending_window": None,
            "tags": tags,
            "materials": [],
            "rotations": 0,
            "current_material_id": None,
        }
        if origin == "AWS_KMS":
            key["materials"].append(material_record(key_id, spec, generate_material(spec), now, "CURRENT", None))
            key["current_material_id"] = key["materials"][0]["id"]
        with self.store.transaction():
            self.store.put("keys", key_id, key)
        return {"KeyMetadata": self._metadata(key)}

    def _op_DescribeKey(self, region: str, body: DescribeKeyBody) -> dict[str, Any]:
        with self.store.transaction():
            return {"KeyMetadata": self._metadata(self._load(region, body.key_id))}

    def _op_ListKeys(self, region: str, body: ListKeysBody) -> dict[str, Any]:
        with self.store.transaction():
            keys = [
                key
                for _, key in self.store.list("keys")
                if key["region"] == region and not self._sweep(key) and not self.visibility.unlisted(key["created"])
            ]
        page, extra = marker_page(keys, body, 100, 1000)
        return {"Keys": [{"KeyId": k["id"], "KeyArn": k["arn"]} for k in page], **extra}

    def _op_UpdateKeyDescription(self, region: str, body: UpdateKeyDescriptionBody) -> dict[str, Any]:
        description = body.description
        if len(description) > 8192:
            raise validation("Description must be a string of at most 8192 characters")
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._refuse_pending_deletion(key)
            key["description"] = description
            self.store.put("keys", key["id"], key)
        return {}

    def _op_EnableKey(self, region: str, body: KeyReference) -> dict[str, Any]:
        return self._set_enabled(region, body, True)

    def _op_DisableKey(self, region: str, body: KeyReference) -> dict[str, Any]:
        return self._set_enabled(region, body, False)

    def _set_enabled(self, region: str, body: KeyReference, enabled: bool) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
            state = self._state(key)
            if state == "PendingImport":
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
            self._refuse_pending_deletion(key)
            key["enabled"] = enabled
            self.store.put("keys", key["id"], key)
        return {}

    def _op_ScheduleKeyDeletion(self, region: str, body: ScheduleKeyDeletionBody) -> dict[str, Any]:
        window = body.pending_window_in_days
        if not 7 <= window <= 30:
            raise validation("PendingWindowInDays must be between 7 and 30")
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._refuse_pending_deletion(key)
            deletion_date = self._now() + timedelta(days=window)
            key.update(deletion_date=deletion_date.isoformat(), pending_window=window)
            self.store.put("keys", key["id"], key)
        return {
            "KeyId": key["arn"],
            "DeletionDate": deletion_date.timestamp(),
            "KeyState": "PendingDeletion",
            "PendingWindowInDays": window,
        }

    def _op_CancelKeyDeletion(self, region: str, body: KeyReference) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
            if not key.get("deletion_date"):
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is not pending deletion.")
            # A cancelled deletion leaves the key Disabled, never Enabled.
            key.update(deletion_date=None, pending_window=None, enabled=False)
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"]}

    def _op_TagResource(self, region: str, body: TagResourceBody) -> dict[str, Any]:
        tags = self._validate_tags(body.tags)
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._refuse_pending_deletion(key)
            key["tags"] = self._merge_tags(key["tags"], tags)
            self.store.put("keys", key["id"], key)
        return {}

    def _op_UntagResource(self, region: str, body: UntagResourceBody) -> dict[str, Any]:
        names = body.tag_keys
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._refuse_pending_deletion(key)
            key["tags"] = [[k, v] for k, v in key["tags"] if k not in names]
            self.store.put("keys", key["id"], key)
        return {}

    def _op_ListResourceTags(self, region: str, body: ListResourceTagsBody) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
        page, extra = marker_page(key["tags"], body, 50, 50)
        return {"Tags": [{"TagKey": k, "TagValue": v} for k, v in page], **extra}
