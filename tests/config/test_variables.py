"""Variable values: precedence of -var, -var-file (HCL and JSON), environment and default; type
conversion; errors; sensitive values kept out of every message."""

from __future__ import annotations

import json
from pathlib import Path

from tests.config.conftest import PLUGINS, ConfigDir

DECLARATIONS = """
variable "region" {
  type    = string
  default = "from-default"
}
variable "count" {
  type    = number
  default = 1
}
variable "flags" {
  type    = map(bool)
  default = {}
}
variable "envs" {
  type    = set(string)
  default = ["b", "a"]
}
variable "anything" {
  default = null
}
"""


def values(config_dir: ConfigDir, **kwargs: object) -> dict[str, object]:
    config = config_dir.ok(**kwargs)
    return {name: variable.value for name, variable in config.variables.items()}


def test_defaults_apply_and_are_converted(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": DECLARATIONS})
    assert values(config_dir) == {
        "region": "from-default",
        "count": 1,
        "flags": {},
        "envs": ["a", "b"],
        "anything": None,
    }


def test_precedence_var_over_var_file_over_environment_over_default(config_dir: ConfigDir, tmp_path: Path) -> None:
    config_dir.write({"main.kp.hcl": DECLARATIONS})
    hcl_file = tmp_path / "first.hcl"
    hcl_file.write_text('region = "from-hcl-file"\ncount = 2\nflags = { a = true }\n')
    json_file = tmp_path / "second.json"
    json_file.write_text(json.dumps({"count": 3, "envs": ["z", "z", "y"]}))
    environ = {"KEYPLAN_VAR_region": "from-env", "KEYPLAN_VAR_count": "4", "KEYPLAN_VAR_anything": '{ k = ["v"] }'}

    assert values(config_dir, environ=environ) == {
        "region": "from-env",
        "count": 4,
        "flags": {},
        "envs": ["a", "b"],
        "anything": {"k": ["v"]},
    }
    assert values(config_dir, environ=environ, var_files=[hcl_file, json_file]) == {
        "region": "from-hcl-file",
        "count": 3,  # the later file wins
        "flags": {"a": True},
        "envs": ["y", "z"],
        "anything": {"k": ["v"]},
    }
    assert values(
        config_dir,
        environ=environ,
        var_files=[hcl_file, json_file],
        var_args=["region=from-var", "count=5", "count=6", 'flags={ b = "false" }', "anything=plain words"],
    ) == {
        "region": "from-var",
        "count": 6,
        "flags": {"b": False},
        "envs": ["y", "z"],
        "anything": "plain words",
    }


def test_var_values_are_read_as_hcl_for_collections(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": DECLARATIONS})
    got = values(config_dir, var_args=['envs=["prod", "dev", upper("qa")]', "region=[not a list]", "anything=[1, 2]"])
    assert got["envs"] == ["QA", "dev", "prod"]
    assert got["region"] == "[not a list]"  # a string variable takes the text as it is
    assert got["anything"] == [1, 2]


def test_variables_drive_keys(config_dir: ConfigDir) -> None:
    config_dir.write(
        {
            "main.kp.hcl": DECLARATIONS
            + PLUGINS
            + """
key "k" {
  for_each  = var.envs
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { region = var.region, count = tostring(var.count) }
}
"""
        }
    )
    config = config_dir.ok(var_args=['envs=["x"]', "count=7"], environ={"KEYPLAN_VAR_region": "eu"})
    assert list(config.keys) == ['key.k["x"]']
    assert config.keys['key.k["x"]'].labels == {"region": "eu", "count": "7"}


def test_variable_errors(config_dir: ConfigDir, tmp_path: Path) -> None:
    config_dir.write(
        {
            "main.kp.hcl": """variable "needed" {
  type = string
}
variable "count" {
  type    = number
  default = 1
}
variable "bad_default" {
  type    = list(string)
  default = "x"
}
variable "bad_type" {
  type = list
}
"""
        }
    )
    var_file = tmp_path / "vars.hcl"
    var_file.write_text('count = "many"\nunknown = 1\n')
    bad_json = tmp_path / "vars.json"
    bad_json.write_text('{"count": 1,,}')
    config, diagnostics = config_dir.load(
        var_args=["regoin=x", "novalue"], var_files=[var_file, bad_json], environ={"KEYPLAN_VAR_count": "lots"}
    )
    assert config is None
    found = [(str(d.range) if d.range else "-", d.severity.value, d.summary) for d in diagnostics]
    assert sorted(found) == sorted(
        [
            ("main.kp.hcl:10:13", "error", "Incorrect attribute value type"),
            ("main.kp.hcl:13:10", "error", "Invalid type"),
            (f"{bad_json}:1:13", "error", "Invalid JSON in variables file"),
            (f"{var_file}:2:1", "warning", "Value for undeclared variable"),
            ("-", "error", "Value for undeclared variable"),
            ("-", "error", "Invalid -var option"),
            ("main.kp.hcl:1:1", "error", "No value for required variable"),
            (f"{var_file}:1:9", "error", "Invalid value for variable"),
        ]
    ), found
    details = {d.summary: d.detail for d in diagnostics}
    assert "-var 'needed=VALUE'" in details["No value for required variable"]
    assert "KEYPLAN_VAR_needed" in details["No value for required variable"]
    undeclared = [d for d in diagnostics if d.summary == "Value for undeclared variable" and d.range is None][0]
    assert "Did you mean" not in undeclared.detail or "regoin" in undeclared.detail


def test_unknown_var_suggests_the_declared_name(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": DECLARATIONS})
    config, diagnostics = config_dir.load(var_args=["regoin=x"])
    assert config is None
    assert [d.summary for d in diagnostics] == ["Value for undeclared variable"]
    assert "Did you mean region?" in diagnostics.errors[0].detail


def test_environment_value_of_wrong_type_names_its_origin(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": DECLARATIONS})
    config, diagnostics = config_dir.load(environ={"KEYPLAN_VAR_count": "lots"})
    assert config is None
    (problem,) = diagnostics.errors
    assert problem.summary == "Invalid value for variable"
    assert str(problem.range) == "main.kp.hcl:6:1"
    assert "KEYPLAN_VAR_count" in problem.detail and "a number is required" in problem.detail


def test_sensitive_values_never_appear_in_diagnostics(config_dir: ConfigDir) -> None:
    secret = "hunter2-very-secret"
    config_dir.write(
        {
            "main.kp.hcl": """variable "token" {
  type      = number
  sensitive = true
}
variable "period" {
  sensitive = true
}
variable "map" {
  type      = map(string)
  sensitive = true
}
"""
            + PLUGINS
            + """
key "k" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { a = var.map[var.period] }
  rotation { every = var.period }
}
"""
        }
    )
    config, diagnostics = config_dir.load(
        var_args=[f"token={secret}", f"period={secret}", f'map={{ other = "{secret}-inside" }}'],
    )
    assert config is None
    summaries = sorted(d.summary for d in diagnostics)
    # The rotation period is refused as sensitive before it is read as a duration.
    assert summaries == ["Invalid index", "Invalid value for variable", "Sensitive value in a key block"]
    for diagnostic in diagnostics:
        assert secret not in str(diagnostic)
        assert secret not in diagnostic.model_dump_json()
    assert any("(sensitive value)" in d.detail for d in diagnostics)
