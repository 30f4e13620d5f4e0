"""The syntax of `*.kp.hcl` files: HCL text parsed into bodies, blocks, attributes and expression
trees, every node carrying its place in the file.

python-hcl2 provides the grammar and the Lark parse tree (the only form that keeps line and
column numbers); `keyplan.config.builder` turns that tree into the small typed syntax tree of
`keyplan.config.tree` that the evaluator walks, and this module turns parse failures into
diagnostics instead of exceptions.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import hcl2
from hcl2.postlexer import PostLexer
from lark import Lark, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput

from keyplan.config.builder import SyntaxProblem, TreeBuilder
from keyplan.config.tree import (
    Attribute,
    Binary,
    Block,
    Body,
    Call,
    Conditional,
    Expr,
    ForExpr,
    GetAttr,
    Index,
    Literal,
    Name,
    ObjectExpr,
    ObjectItem,
    Splat,
    Template,
    TupleExpr,
    Unary,
    Unsupported,
    quoted,
)
from keyplan.diagnostics import Diagnostics, SourceRange

# The tree the parser builds is part of this module's face: importers take both from here.
__all__ = ["Expr", "Literal", "Template", "Name", "GetAttr", "Index", "Splat", "TupleExpr", "ObjectItem", "ObjectExpr", "Call", "Conditional", "Binary", "Unary", "ForExpr", "Unsupported", "Attribute", "Block", "Body", "quoted", "parse_file", "parse_expression"]

# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


# HCL identifiers are Unicode: ID_Start then ID_Continue or '-' (UAX #31), with a leading
# underscore allowed too. python-hcl2's grammar spells them in ASCII; keyplan parses with the
# same grammar and this NAME. Python's \w is Unicode word characters, so `[^\W\d]` is a letter or
# underscore and `[\w-]` what may follow.
_ASCII_NAME = "NAME : /[a-zA-Z_][a-zA-Z0-9_-]*/"
_UNICODE_NAME = "NAME : /[^\\W\\d][\\w-]*/"


@functools.cache
def _parser() -> Lark:
    package = Path(hcl2.__file__).parent
    grammar = (package / "hcl2.lark").read_text(encoding="utf-8")
    if _ASCII_NAME not in grammar:
        raise RuntimeError("python-hcl2's grammar changed its NAME terminal; update keyplan.config.syntax")
    # Building the LALR tables takes seconds: they are cached beside python-hcl2's own (built once
    # by `make venv`; Lark checks the grammar's hash before using a cache), or in the temporary
    # directory when the installation is read-only.
    cache: str | bool = str(package / ".keyplan_lark_cache.bin") if os.access(package, os.W_OK) else True
    return Lark(
        grammar.replace(_ASCII_NAME, _UNICODE_NAME),
        parser="lalr",
        propagate_positions=True,
        postlex=PostLexer(),
        cache=cache,
    )


def parse_file(text: str, filename: str, diagnostics: Diagnostics) -> Body | None:
    """Parse one file. Syntax errors become diagnostics and give None; duplicate attributes
    become diagnostics and the first value is kept."""
    try:
        tree = _parser().parse(text + "\n")  # the newline stands in for an end-of-file token
    except UnexpectedInput as exc:
        diagnostics.error(
            "Invalid syntax",
            _describe_parse_error(exc),
            range=_clamp(SourceRange(filename=filename, line=exc.line, column=exc.column), text),
        )
        return None
    except RecursionError:
        _too_deep(filename, diagnostics)
        return None
    try:
        return TreeBuilder(filename, diagnostics).body(_only_tree(tree, "body"))
    except SyntaxProblem as problem:
        diagnostics.error(problem.summary, problem.detail, range=problem.range)
        return None
    except RecursionError:
        _too_deep(filename, diagnostics)
        return None


def _too_deep(filename: str, diagnostics: Diagnostics) -> None:
    diagnostics.error(
        "Configuration too deeply nested",
        "The file nests brackets, parentheses or blocks too deeply to be read. Simplify the nesting.",
        range=SourceRange(filename=filename),
    )


def parse_expression(text: str, filename: str, diagnostics: Diagnostics) -> Expr | None:
    """Parse a lone expression (a `-var` value, an environment variable) as `value = TEXT`."""
    body = parse_file(f"value = {text}", filename, diagnostics)
    if body is None or "value" not in body.attributes or body.blocks or len(body.attributes) != 1:
        return None
    return body.attributes["value"].expr


_TOKEN_WORDS = {
    "RBRACE": "a closing brace `}`",
    "RSQB": "a closing bracket `]`",
    "RPAR": "a closing parenthesis `)`",
    "LBRACE": "an opening brace `{`",
    "EQ": "an equals sign `=`",
    "COLON": "a colon `:`",
    "COMMA": "a comma `,`",
    "DBLQUOTE": "a closing quote `\"`",
    "NL_OR_COMMENT": "a new line",
    "FOR_OBJECT_ARROW": "an arrow `=>`",
    "IN": "the keyword `in`",
}
_EXPRESSION_STARTS = {"NAME", "INT_LITERAL", "DBLQUOTE", "LSQB", "LBRACE", "LPAR"}


def _describe_parse_error(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        found = f"the character `{exc.char}`"
        expected: set[str] = set(exc.allowed or ())
    else:
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END" or not str(token).strip():
            found = "the end of the file" if token is None or token.type == "$END" else "a line break"
        else:
            found = f"`{str(token).strip().splitlines()[0][:30]}`"
        expected = set(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
    wanted: list[str] = []
    words = dict(_TOKEN_WORDS)
    if expected & _EXPRESSION_STARTS and len(expected) > 3:
        wanted.append("an expression")
        # Tokens that may open an expression are covered by "an expression"; the lexer is
        # contextual, so the others in the set would only confuse.
        for name in ("DBLQUOTE", "LBRACE", "NL_OR_COMMENT", "IN"):
            words.pop(name)
    wanted += sorted(word for name, word in words.items() if name in expected)
    if not wanted:
        return f"keyplan could not read the file here: it found {found}. Check the HCL syntax at this place."
    return (
        f"keyplan could not read the file here: it found {found} where it expected "
        f"{' or '.join(wanted[:4])}. Correct the HCL syntax at this place (an unclosed bracket or "
        "quote on an earlier line is a common cause)."
    )


def _clamp(range: SourceRange, text: str) -> SourceRange:
    """Lark reports errors at end of input on the line after the last one (the parser appends a
    newline); point at the end of the real text instead."""
    lines = text.split("\n")
    if range.line <= len(lines):
        return range
    last = len(lines[-1]) + 1 if lines else 1
    return SourceRange(filename=range.filename, line=max(len(lines), 1), column=last)


def _only_tree(tree: Tree[Any], data: str) -> Tree[Any]:
    for child in tree.children:
        if isinstance(child, Tree) and child.data == data:
            return child
    raise AssertionError(f"parse tree has no {data}")
