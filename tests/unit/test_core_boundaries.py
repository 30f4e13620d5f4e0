"""The core's shape, checked by reading its source: `keyplan/` imports no plugin and names no
cloud (plugins contribute what is theirs through `keyplan.provider` and entry points), and the
command-line modules import each other without a circle."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import networkx as nx
import pytest

CORE = Path(__file__).resolve().parents[2] / "keyplan"
MODULES = sorted(CORE.rglob("*.py"))

# Clouds and their key-management products, as whole words (identifiers, strings, docstrings
# and comments alike).
CLOUD_WORDS = re.compile(
    r"\b(aws|amazon|azure|microsoft|gcp|google|s3|arn|oci|oracle|hashicorp|cloud\s*kms|cloudkms|key\s*vault|"
    r"keyvault|managed\s*hsm|managedhsm|cloudhsm|boto3?|botocore)\b",
    re.IGNORECASE,
)

# Where naming a cloud is the point, and why. Keep this short.
ALLOWED: dict[str, set[str]] = {}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _split(text: str) -> str:
    """snake_case and CamelCase apart, so `AZURE_KEK` and `AwsProvider` are read as words."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text).replace("_", " ")


def _words(path: Path) -> list[tuple[int, str]]:
    """Every identifier, string and comment of the module (words split), with its line."""
    words: list[tuple[int, str]] = []
    source = path.read_text()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT) or token.type == getattr(
            tokenize, "FSTRING_MIDDLE", -1
        ):
            words.append((token.start[0], _split(token.string)))
    return words


def test_every_core_module_is_read() -> None:
    assert len(MODULES) > 40
    assert CORE / "cli" / "main.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE.parent)))
def test_the_core_imports_no_plugin(path: Path) -> None:
    plugins = sorted(name for name in _imports(path) if name == "providers" or name.startswith("providers."))
    assert not plugins, f"{path.relative_to(CORE.parent)} imports {plugins}: contribute it through keyplan.provider"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE.parent)))
def test_the_core_names_no_cloud(path: Path) -> None:
    allowed = ALLOWED.get(_module_name(path), set())
    named = [
        f"line {line}: {match.group(0)!r} in {text[:80]!r}"
        for line, text in _words(path)
        for match in CLOUD_WORDS.finditer(text)
        if match.group(0).lower() not in allowed
    ]
    assert not named, f"{path.relative_to(CORE.parent)} names a cloud:\n" + "\n".join(named)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The checks above can fail: a module naming a cloud or importing a plugin is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        'import providers.aws\n# uses Azure\nKIND = "gcp"\ndef amazon_s3(): ...\nclass KeyVaultThing: ...\n'
        'x = f"{KIND} Managed HSM"\n'
    )
    assert "providers.aws" in _imports(bad)
    found = {m.group(0).lower() for _, text in _words(bad) for m in CLOUD_WORDS.finditer(text)}
    assert found == {"aws", "azure", "gcp", "amazon", "s3", "key vault", "managed hsm"}


def test_no_import_circle_among_command_line_modules() -> None:
    graph: nx.DiGraph[str] = nx.DiGraph()
    cli = sorted((CORE / "cli").glob("*.py"))
    names = {_module_name(p) for p in cli}
    for path in cli:
        module = _module_name(path)
        graph.add_node(module)
        for imported in _imports(path):
            for candidate in (imported, imported.rsplit(".", 1)[0]):
                if candidate in names and candidate != module:
                    graph.add_edge(module, candidate)
    assert len(graph) >= 5
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"command-line modules import each other in a circle: {cycles}"
