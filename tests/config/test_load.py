"""Valid configurations evaluate to the expected keys, sources, providers and state backend."""

from __future__ import annotations

from datetime import timedelta

from tests.config.conftest import PLUGINS, ConfigDir

SEGMENTATION = (
    '''
keyplan {
  state "local" { path = "custom.kpstate.json" }
}
variable "environments" {
  type        = list(string)
  default     = ["dev", "prod"]
  description = "Where the apps run"
  sensitive   = false
}
variable "extra_labels" {
  type    = map(string)
  default = { team = "platform" }
}
locals {
  apps  = toset(["payments", "ledger"])
  pairs = { for p in setproduct(local.apps, var.environments) : "${p[0]}-${p[1]}" => { app = p[0], env = p[1] } }
}
'''
    + PLUGINS
    + '''
key "app" {
  for_each    = local.pairs
  algorithm   = "AES_256"
  usage       = "encrypt"
  source      = source.software.main
  targets     = [provider.aws.main]
  labels      = merge({ app = each.value.app, env = each.value.env }, var.extra_labels)
  description = "Data key for ${each.value.app} in ${each.value.env}"
  aliases     = ["alias/${each.key}"]
  enabled     = true
  expiry   { after = "365d" }
  rotation { every = "90d" }
  lifecycle { prevent_destroy = true }
}
'''
)


def test_for_each_over_setproduct_segments_keys(config_dir: ConfigDir) -> None:
    config = config_dir.write({"main.kp.hcl": SEGMENTATION}).ok()

    assert sorted(config.keys) == [
        'key.app["ledger-dev"]',
        'key.app["ledger-prod"]',
        'key.app["payments-dev"]',
        'key.app["payments-prod"]',
    ]
    key = config.keys['key.app["payments-prod"]']
    assert key.name == "app"
    assert key.each_key == "payments-prod"
    assert key.algorithm == "AES_256"
    assert key.usage == "encrypt"
    assert key.source == "software.main"
    assert key.targets == ("aws.main",)
    assert key.labels == {"app": "payments", "env": "prod", "team": "platform"}
    assert key.description == "Data key for payments in prod"
    assert key.aliases == ("alias/payments-prod",)
    assert key.enabled is True
    assert key.expiry == timedelta(days=365)
    assert key.rotation == timedelta(days=90)
    assert key.prevent_destroy is True
    assert str(key.range) == "main.kp.hcl:26:1"
    assert str(key.range_of("labels")) == "main.kp.hcl:32:17"
    assert str(key.range_of("targets[0]")) == "main.kp.hcl:31:18"
    assert str(key.range_of("rotation.every")) == "main.kp.hcl:37:22"

    assert config.state.kind == "local"
    assert config.state.attributes == {"path": "custom.kpstate.json"}
    assert config.sources["software.main"].attributes == {"keystore": ".keyplan/keystore.json"}
    assert config.providers["aws.main"].attributes == {"region": "us-east-1", "endpoint": "embedded"}
    assert str(config.providers["aws.main"].attribute_ranges["endpoint"]) == "main.kp.hcl:23:3"
    assert config.variables["environments"].value == ["dev", "prod"]
    assert config.files == ("main.kp.hcl",)


def test_key_without_for_each_and_defaults(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "plugins.kp.hcl": PLUGINS,
            "main.kp.hcl": """
key "signing" {
  algorithm = "EC_P256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry { never = true }
}
""",
        }
    ).ok()

    key = config.keys["key.signing"]
    assert key.each_key is None
    assert key.usage is None
    assert key.labels == {}
    assert key.aliases == ()
    assert key.enabled is True
    assert key.expiry is None
    assert key.rotation is None
    assert key.prevent_destroy is False
    assert config.state.attributes == {"path": "keyplan.kpstate.json"}
    assert config.files == ("main.kp.hcl", "plugins.kp.hcl")


def test_for_each_over_a_set_of_strings_and_a_map(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PLUGINS
            + """
key "tenant" {
  for_each  = toset(["b", "a", "b"])
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { tenant = each.value, same = each.key == each.value ? "yes" : "no" }
}
key "sized" {
  for_each  = { small = 2048, large = 4096 }
  algorithm = "RSA_${each.value}"
  usage     = each.key == "small" ? "sign" : "decrypt"
  source    = source.software.main
  targets   = [provider.aws.main]
  enabled   = each.value > 3000
}
"""
        }
    ).ok()

    assert sorted(config.keys) == ['key.sized["large"]', 'key.sized["small"]', 'key.tenant["a"]', 'key.tenant["b"]']
    assert config.keys['key.tenant["a"]'].labels == {"tenant": "a", "same": "yes"}
    assert config.keys['key.sized["large"]'].algorithm == "RSA_4096"
    assert config.keys['key.sized["large"]'].usage == "decrypt"
    assert config.keys['key.sized["large"]'].enabled is True
    assert config.keys['key.sized["small"]'].enabled is False
    assert config.keys['key.sized["small"]'].usage == "sign"


def test_empty_for_each_gives_no_instances(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PLUGINS
            + """
key "none" {
  for_each  = {}
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
"""
        }
    ).ok()
    assert config.keys == {}


def test_locals_evaluate_in_dependency_order_across_files(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "a.kp.hcl": 'locals {\n  name = "${local.prefix}-${local.suffix}"\n}\n',
            "b.kp.hcl": 'locals {\n  prefix = upper(local.base)\n  suffix = length(local.parts)\n}\n',
            "c.kp.hcl": 'locals {\n  base = "kp"\n  parts = split("/", "a/b/c")\n}\n'
            + PLUGINS
            + """
key "k" {
  algorithm   = "AES_256"
  source      = source.software.main
  targets     = [provider.aws.main]
  description = local.name
}
""",
        }
    ).ok()
    assert config.keys["key.k"].description == "KP-3"


def test_templates_conditionals_and_for_expressions_in_keys(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": PLUGINS
            + """
variable "regions" {
  type    = map(string)
  default = { east = "us-east-1", west = "us-west-2", off = "" }
}
locals {
  active  = { for name, region in var.regions : name => region if region != "" }
  aliases = [for name in keys(local.active) : "alias/${name}"]
  grouped = { for name, region in var.regions : (region == "" ? "off" : "on") => name... }
}
key "k" {
  algorithm   = "HMAC_SHA256"
  source      = source.software.main
  targets     = [provider.aws.main]
  aliases     = local.aliases
  labels      = { on = join("+", local.grouped["on"]), off = join("+", local.grouped.off), count = "${length(local.active)}" }
  description = "escaped $${not} %%{this} \\"quoted\\" tab\\tend"
  enabled     = length(local.active) == 2 && !contains(keys(local.active), "off")
}
"""
        }
    ).ok()
    key = config.keys["key.k"]
    assert key.aliases == ("alias/east", "alias/west")
    assert key.labels == {"on": "east+west", "off": "off", "count": "2"}
    assert key.description == 'escaped ${not} %{this} "quoted" tab\tend'
    assert key.enabled is True


def test_digest_changes_with_what_the_configuration_means_and_variable_values(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": 'variable "x" {\n  default = "a"\n}\n'})
    first = config_dir.ok().digest
    assert config_dir.ok().digest == first
    assert config_dir.ok(var_args=["x=b"]).digest != first
    config_dir.write({"other.kp.hcl": "# a comment\n"})
    assert config_dir.ok().digest == first, "a comment changes nothing the configuration means"
    config_dir.write({"main.kp.hcl": 'variable "x" {\n  default = "c"\n}\n'})
    assert config_dir.ok().digest != first


def test_attributes_without_each_are_the_same_for_every_instance(config_dir: ConfigDir) -> None:
    """An attribute that never mentions `each` is evaluated once per block (keys.py `_Once`):
    every instance gets its value, and the lists and maps each key keeps are its own."""
    text = (
        'variable "team" {\n  type = string\n  default = "ops"\n}\n'
        + PLUGINS
        + """
key "k" {
  for_each    = toset(["a", "b", "c"])
  algorithm   = "AES_256"
  source      = source.software.main
  targets     = [provider.aws.main]
  labels      = { team = upper(var.team) }
  description = "for ${each.key}"
  aliases     = [for x in ["x", "y"] : "alias/${x}-${var.team}"]
  rotation { every = "90d" }
}
"""
    )
    keys = list(config_dir.write({"main.kp.hcl": text}).ok().keys.values())
    assert [(k.each_key, k.description) for k in keys] == [("a", "for a"), ("b", "for b"), ("c", "for c")]
    assert all(k.labels == {"team": "OPS"} and k.aliases == ("alias/x-ops", "alias/y-ops") for k in keys)
    assert all(k.rotation == timedelta(days=90) and k.targets == ("aws.main",) for k in keys)
    assert keys[0].labels is not keys[1].labels


def test_mentions_finds_a_name_anywhere_in_an_expression() -> None:
    from keyplan.config.expressions import mentions
    from keyplan.config.syntax import parse_file
    from keyplan.diagnostics import Diagnostics

    def attribute(text: str) -> bool:
        body = parse_file(f"x = {text}\n", "t.kp.hcl", Diagnostics())
        assert body is not None
        return mentions(body.attributes["x"].expr, "each")

    assert attribute('"key-${each.key}"') and attribute("each.value[0]") and attribute('{ a = [1, each.key] }')
    assert attribute('var.on ? "a" : lookup(var.m, each.key, "z")') and attribute("[for x in each.value : x]")
    assert not attribute('"plain"') and not attribute("var.each") and not attribute('{ each = "literal key" }')
