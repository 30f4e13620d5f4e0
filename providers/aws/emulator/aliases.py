"""KMS aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from typing import Any

from providers.aws.emulator.bodies import AliasBody, AliasTargetBody, ListAliasesBody
from providers.aws.emulator.core import KmsCore
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.wire import (
    ALIAS_NAME,
    epoch,
    marker_page,
)


class AliasRoutes(KmsCore):
    @staticmethod
    def _validate_alias_name(name: str) -> str:
        if not name.startswith("alias/"):
            raise validation(
                'Alias must start with the prefix "alias/". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html'
            )
        if name.startswith("alias/aws/"):
            raise KmsError(
                "NotAuthorizedException",
                f"{name} is a reserved alias name; alias/aws/ names belong to AWS managed keys.",
            )
        if len(name) > 256 or not ALIAS_NAME.match(name):
            raise validation(
                "Alias names may contain only alphanumeric characters, forward slashes (/), underscores (_) and dashes (-)"
            )
        return name

    def _alias_target(self, region: str, body: AliasTargetBody) -> dict[str, Any]:
        target = body.target_key_id
        if "alias/" in target:
            raise validation("TargetKeyId must name a key, not an alias")
        key = self._load(region, target)
        self._refuse_pending_deletion(key)
        return key

    def _op_CreateAlias(self, region: str, body: AliasTargetBody) -> dict[str, Any]:
        name = self._validate_alias_name(body.alias_name)
        with self.store.transaction():
            key = self._alias_target(region, body)
            if self.store.get("aliases", f"{region}:{name}") is not None:
                raise KmsError(
                    "AlreadyExistsException", f"An alias with the name {self._alias_arn(region, name)} already exists"
                )
            now = self._now().isoformat()
            self.store.put(
                "aliases", f"{region}:{name}", {"name": name, "target": key["id"], "created": now, "updated": now}
            )
        return {}

    def _op_UpdateAlias(self, region: str, body: AliasTargetBody) -> dict[str, Any]:
        name = self._validate_alias_name(body.alias_name)
        with self.store.transaction():
            alias = self.store.get("aliases", f"{region}:{name}")
            if alias is None:
                raise KmsError("NotFoundException", f"Alias {self._alias_arn(region, name)} is not found.")
            key = self._alias_target(region, body)
            alias.update(target=key["id"], updated=self._now().isoformat())
            self.store.put("aliases", f"{region}:{name}", alias)
        return {}

    def _op_DeleteAlias(self, region: str, body: AliasBody) -> dict[str, Any]:
        name = self._validate_alias_name(body.alias_name)
        with self.store.transaction():
            if not self.store.delete("aliases", f"{region}:{name}"):
                raise KmsError("NotFoundException", f"Alias {self._alias_arn(region, name)} is not found.")
        return {}

    def _op_ListAliases(self, region: str, body: ListAliasesBody) -> dict[str, Any]:
        with self.store.transaction():
            key_id = self._load(region, body.key_id)["id"] if body.key_id else None
            aliases = [
                alias
                for _, alias in self.store.list("aliases", f"{region}:")
                if (key_id is None or alias["target"] == key_id)
                and not self.visibility.unlisted(alias["created"])
            ]
        page, extra = marker_page(aliases, body, 50, 100)
        entries = [
            {
                "AliasName": a["name"],
                "AliasArn": self._alias_arn(region, a["name"]),
                "TargetKeyId": a["target"],
                "CreationDate": epoch(a["created"]),
                "LastUpdatedDate": epoch(a["updated"]),
            }
            for a in page
        ]
        return {"Aliases": entries, **extra}
