"""No input, however malformed, makes loading raise: every problem is a diagnostic with a place
in a file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from keyplan.config import load_config
from tests.config.test_load import SEGMENTATION

MALFORMED = [
    "",
    "{",
    "}",
    "key",
    'key "a"',
    'key "a" {',
    'key "a" { algorithm = }',
    'key "a" { algorithm = "AES_256" "x" }',
    "locals { a = [1, 2,, ] }",
    "locals { a = {1 = } }",
    "locals { a = (((((1 }",
    "locals { a = 1 +* 2 }",
    "locals { a = [for x in : x] }",
    "locals { a = x ? : 1 }",
    'locals { a = "${" }',
    'locals { a = "${}" }',
    "locals { a = \"unterminated }\n",
    "locals { a = <<EOT\nno end\n }",
    "locals { a = 1.2.3 }",
    "locals { a = foo::bar::baz(1) }",
    "locals { a = [1][*][\"x\"] }",
    "locals { a = ${x} }",
    "\x00\x01\x02",
    "locals { a = " + "[" * 300 + "]" * 300 + " }",
    "locals { a = " + "(" * 2000 + "1" + ")" * 2000 + " }",
    "key \"a\" { for_each = { for k in [1, 2] : k => k } }",
    "variable \"v\" { type = list(list) }",
    "variable \"v\" { type = map(string, string) }",
    "variable \"v\" { type = 3 }",
    "variable \"v\" { default = var.other }",
    "source \"\" \"\" {}",
    "keyplan { state {} }",
    "keyplan { state \"local\" { path = each.key } }",
    "key \"a\" { lifecycle \"x\" { prevent_destroy = 1 } }",
    "\ufeffkey \"bom\" {}",
    "key \"a\" {\r\n  algorithm = \"AES_256\"\r\n}\r\n",
]


def _load_text(directory: Path, text: str) -> None:
    (directory / "main.kp.hcl").write_text(text, encoding="utf-8", errors="surrogatepass")
    config, diagnostics = load_config(directory, environ={})
    if config is None:
        assert diagnostics.has_errors()
    for diagnostic in diagnostics:
        assert diagnostic.summary and diagnostic.detail
        assert diagnostic.range is not None and diagnostic.range.filename == "main.kp.hcl"


@pytest.mark.parametrize("text", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_input_gives_diagnostics(tmp_path: Path, text: str) -> None:
    _load_text(tmp_path, text)


def test_invalid_utf8_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "main.kp.hcl").write_bytes(b'locals {\n  a = "\xff"\n}\n')
    config, diagnostics = load_config(tmp_path, environ={})
    assert config is None
    assert [(str(d.range), d.summary) for d in diagnostics] == [("main.kp.hcl:2:1", "Invalid file encoding")]


def test_random_mutations_of_a_valid_file(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    alphabet = '{}[]()"=.,:?!<>+-*/%$#\n abc0123'
    for _ in range(120):
        text = list(SEGMENTATION)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(text))
            if rng.random() < 0.5:
                del text[position]
            else:
                text.insert(position, rng.choice(alphabet))
        _load_text(tmp_path, "".join(text))


def test_no_configuration_files(tmp_path: Path) -> None:
    config, diagnostics = load_config(tmp_path, environ={})
    assert config is None
    assert [d.summary for d in diagnostics] == ["No configuration files"]
