"""validate_config against the real plugins (software and PKCS#11 sources, AWS provider):
settings models, algorithms, usages, references, capabilities and the providers' own checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from keyplan import registry
from keyplan.algorithms import KeyUsage, get_algorithm
from keyplan.config import Config, key_spec, load_config, validate_config
from tests.config.conftest import PLUGINS, ConfigDir
from tests.config.test_load import SEGMENTATION


def problems(config: Config) -> list[tuple[str, str]]:
    return [(str(d.range), d.summary) for d in validate_config(config)]


def test_a_valid_configuration_has_no_diagnostics(config_dir: ConfigDir) -> None:
    config = config_dir.write({"main.kp.hcl": SEGMENTATION}).ok()
    assert list(validate_config(config)) == []


def test_key_spec_carries_what_providers_need(config_dir: ConfigDir) -> None:
    config = config_dir.write({"main.kp.hcl": SEGMENTATION}).ok()
    key = config.keys['key.app["ledger-dev"]']
    spec = key_spec(key)
    assert spec.address == 'key.app["ledger-dev"]'
    assert spec.algorithm == get_algorithm("AES_256")
    assert spec.usage is KeyUsage.ENCRYPT
    assert spec.labels == {"app": "ledger", "env": "dev", "team": "platform"}
    assert spec.aliases == ("alias/ledger-dev",)
    assert spec.expiry == timedelta(days=365)
    assert spec.rotation == timedelta(days=90)
    assert spec.range == key.range


def test_usage_defaults_to_the_algorithm_default(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PLUGINS
            + 'key "r" {\n  algorithm = "RSA_3072"\n  source = source.software.main\n  targets = [provider.aws.main]\n}\n'
        }
    ).ok()
    assert key_spec(config.keys["key.r"]).usage is KeyUsage.SIGN


def test_a_bool_is_not_taken_for_a_number_in_plugin_settings(config_dir: ConfigDir) -> None:
    """`max_concurrency = true` is an error at its attribute (not one call in flight), while a
    setting that takes a bool still takes one."""
    config = config_dir.write(
        {
            "main.kp.hcl": """provider "aws" "d" {
  region          = "us-east-1"
  max_concurrency = true
}
provider "aws" "e" {
  region                     = "us-east-1"
  consistency_window_seconds = false
}
"""
        }
    ).ok()
    diagnostics = list(validate_config(config))
    assert [(str(d.range), d.summary) for d in diagnostics] == [
        ("main.kp.hcl:3:3", "Invalid argument value"),
        ("main.kp.hcl:7:3", "Invalid argument value"),
    ]
    assert "a number is required, not true" in diagnostics[0].detail
    assert "a number is required, not false" in diagnostics[1].detail


def test_null_leaves_a_plugin_setting_unset(config_dir: ConfigDir) -> None:
    """As in Terraform, `attribute = null` is the attribute left out: its default, or the
    diagnostic of a missing required attribute (not "Input should be a valid dictionary")."""
    config = config_dir.write(
        {
            "main.kp.hcl": """provider "aws" "d" {
  region          = "us-east-1"
  rate_limits     = null
  max_concurrency = null
}
provider "aws" "e" {
  region = null
}
"""
        }
    ).ok()
    diagnostics = list(validate_config(config))
    assert [(str(d.range), d.summary) for d in diagnostics] == [("main.kp.hcl:6:10", "Missing required argument")]


def test_plugin_blocks_are_checked_against_settings_models(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": """source "softwear" "a" {}
source "software" "b" {
  keystor = "x.json"
}
provider "awz" "c" {}
provider "aws" "d" {
  regoin = "us-east-1"
}
provider "aws" "e" {
  region               = "us-east-1"
  deletion_window_days = 3
}
"""
        }
    ).ok()
    diagnostics = validate_config(config)
    assert [(str(d.range), d.summary) for d in diagnostics] == [
        ("main.kp.hcl:1:8", "Unknown source kind"),
        ("main.kp.hcl:3:3", "Unsupported argument"),
        ("main.kp.hcl:5:10", "Unknown provider kind"),
        ("main.kp.hcl:6:10", "Missing required argument"),
        ("main.kp.hcl:7:3", "Unsupported argument"),
        ("main.kp.hcl:11:3", "Invalid argument value"),
    ]
    details = [d.detail for d in diagnostics]
    assert "Did you mean software?" in details[0]
    assert "Did you mean keystore?" in details[1]
    assert "Did you mean aws?" in details[2]
    assert "`region`" in details[3]
    assert "Did you mean region?" in details[4]
    assert "deletion_window_days" in details[5] and "greater than or equal to 7" in details[5]


def test_keys_are_checked_against_algorithms_references_and_targets(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PLUGINS
            + """provider "aws" "other" {
  region = "eu-west-1"
}
key "algorithm" {
  algorithm = "AES256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "usage" {
  algorithm = "AES_256"
  usage     = "sign"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "references" {
  algorithm = "AES_256"
  source    = "software.mian"
  targets   = [provider.aws.main, "aws.elsewhere", provider.aws.main]
}
key "empty" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = []
}
key "rotating_ec" {
  algorithm = "EC_P256"
  source    = source.software.main
  targets   = [provider.aws.main, provider.aws.other]
  rotation { every = "30d" }
}
"""
        }
    ).ok()
    diagnostics = validate_config(config)
    assert [(str(d.range), d.summary, d.address) for d in diagnostics] == [
        ("main.kp.hcl:11:15", "Unknown algorithm", "key.algorithm"),
        ("main.kp.hcl:17:15", "Usage not allowed for this algorithm", "key.usage"),
        ("main.kp.hcl:23:15", "Undeclared source", "key.references"),
        ("main.kp.hcl:24:35", "Undeclared provider", "key.references"),
        ("main.kp.hcl:24:15", "Duplicate target", "key.references"),
        ("main.kp.hcl:29:15", "No targets", "key.empty"),
        ("main.kp.hcl:31:1", "AWS KMS cannot rotate imported EC_P256 keys", "key.rotating_ec"),
        ("main.kp.hcl:31:1", "AWS KMS cannot rotate imported EC_P256 keys", "key.rotating_ec"),
    ]
    details = [d.detail for d in diagnostics]
    assert "Did you mean AES_256?" in details[0]
    assert "encrypt" in details[1]
    assert "Did you mean source.software.main?" in details[2]


PKCS11 = """
source "pkcs11" "hsm" {
  module            = "/usr/lib/softhsm/libsofthsm2.so"
  token_label       = "keyplan"
  pin_env           = "KEYPLAN_PIN"
  wrap_with_trusted = true
}
provider "aws" "main" {
  region = "us-east-1"
}
"""


def test_source_capabilities_and_wrap_methods(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PKCS11
            + """key "hmac" {
  algorithm = "HMAC_SHA224"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main]
}
key "rsa" {
  algorithm = "RSA_2048"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main]
}
key "aes" {
  algorithm = "AES_256"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main]
}
"""
        }
    ).ok()
    diagnostics = validate_config(config)
    assert [(str(d.range), d.summary) for d in diagnostics] == [
        ("main.kp.hcl:13:15", "Source cannot generate this algorithm"),
        ("main.kp.hcl:19:16", "No common wrap method"),
    ]
    assert "RSA_AES_KEY_WRAP" in diagnostics.errors[1].detail.upper()


@pytest.fixture
def ghost_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A provider kind registered to a module that is not installed."""
    ghost = EntryPoint(name="ghost", value="providers.ghost_not_installed:PLUGIN", group=registry.PROVIDERS)
    monkeypatch.setitem(registry._entry_points(registry.PROVIDERS), "ghost", ghost)
    registry.provider_kinds.cache_clear()
    yield
    registry.provider_kinds.cache_clear()


def test_a_plugin_module_that_cannot_be_imported_is_a_diagnostic(config_dir: ConfigDir, ghost_provider: None) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": """source "software" "main" {}
provider "ghost" "g" {}
key "k" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.ghost.g]
}
"""
        }
    ).ok()
    diagnostics = validate_config(config)
    assert [(str(d.range), d.summary) for d in diagnostics] == [
        ("main.kp.hcl:2:10", "Provider plugin cannot be loaded"),
    ]
    assert "ModuleNotFoundError" in diagnostics.errors[0].detail


def test_the_example_configuration_loads_and_validates() -> None:
    example = Path(__file__).parents[2] / "examples" / "config" / "segmented"
    config, diagnostics = load_config(example, environ={})
    assert config is not None, [str(d) for d in diagnostics]
    assert len(config.keys) == 4
    assert list(validate_config(config)) == []
