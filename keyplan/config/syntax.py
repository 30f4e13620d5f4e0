"""The syntax of `*.kp.hcl` files: HCL text parsed into bodies, blocks, attributes and expression
trees, every node carrying its place in the file.

python-hcl2 provides the grammar and the Lark parse tree (the only form that keeps line and
column numbers); this module turns that tree into the small typed syntax tree the evaluator
walks, and turns parse failures into diagnostics instead of exceptions.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.postlexer import PostLexer
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput

from keyplan.diagnostics import Diagnostics, SourceRange
from keyplan.escaping import for_terminal

# ---------------------------------------------------------------------------------------------
# Syntax tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    range: SourceRange


@dataclass(frozen=True)
class Literal(Expr):
    value: Any  # str, int, float, bool or None


@dataclass(frozen=True)
class Template(Expr):
    """A quoted string with `${...}` interpolations; parts are literal text or expressions."""

    parts: tuple[str | Expr, ...]


@dataclass(frozen=True)
class Name(Expr):
    """A bare identifier: the root of a reference (`var`, `local`, `each`) or a for-variable."""

    name: str


@dataclass(frozen=True)
class GetAttr(Expr):
    target: Expr
    name: str
    name_range: SourceRange


@dataclass(frozen=True)
class Index(Expr):
    target: Expr
    key: Expr


@dataclass(frozen=True)
class Splat(Expr):
    """`list[*].attr` or `list.*.attr`: apply `steps` to every element."""

    target: Expr
    steps: tuple[tuple[str, Expr | str], ...]  # ("attr", name) or ("index", expr)


@dataclass(frozen=True)
class TupleExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class ObjectItem:
    key: Expr  # a bare identifier key is a Literal of its name
    value: Expr


@dataclass(frozen=True)
class ObjectExpr(Expr):
    items: tuple[ObjectItem, ...]


@dataclass(frozen=True)
class Call(Expr):
    name: str
    name_range: SourceRange
    args: tuple[Expr, ...]
    expand_last: bool = False


@dataclass(frozen=True)
class Conditional(Expr):
    condition: Expr
    if_true: Expr
    if_false: Expr


@dataclass(frozen=True)
class Binary(Expr):
    operator: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Unary(Expr):
    operator: str
    operand: Expr


@dataclass(frozen=True)
class ForExpr(Expr):
    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # None for the list form `[for ...]`
    value: Expr
    condition: Expr | None
    group: bool = False


@dataclass(frozen=True)
class Unsupported(Expr):
    """A construct keyplan does not evaluate (template directives, interpolating heredocs)."""

    what: str


@dataclass(frozen=True)
class Attribute:
    name: str
    name_range: SourceRange
    expr: Expr
    range: SourceRange  # from the name to the end of the value


@dataclass(frozen=True)
class Block:
    type: str
    labels: tuple[str, ...]
    label_ranges: tuple[SourceRange, ...]
    body: Body
    range: SourceRange  # the block type's name
    end_range: SourceRange  # the closing brace


@dataclass(frozen=True)
class Body:
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class _SyntaxProblem(Exception):
    def __init__(self, summary: str, detail: str, range: SourceRange) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.range = range


MAX_NUMBER_DIGITS = 100  # far beyond any count or size in a key configuration

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
        return _Builder(filename, diagnostics).body(_only_tree(tree, "body"))
    except _SyntaxProblem as problem:
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


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


class _Builder:
    """Turns the Lark tree of one file into the syntax tree above."""

    def __init__(self, filename: str, diagnostics: Diagnostics) -> None:
        self.filename = filename
        self.diagnostics = diagnostics

    # -- positions ----------------------------------------------------------------------------

    def range_of(self, node: Tree[Any] | Token) -> SourceRange:
        if isinstance(node, Token):
            return SourceRange(
                filename=self.filename,
                line=node.line or 1,
                column=node.column or 1,
                end_line=node.end_line,
                end_column=node.end_column,
            )
        meta = node.meta
        if getattr(meta, "empty", True):
            return SourceRange(filename=self.filename)
        return SourceRange(
            filename=self.filename, line=meta.line, column=meta.column, end_line=meta.end_line, end_column=meta.end_column
        )

    def span(self, first: Tree[Any] | Token, last: Tree[Any] | Token) -> SourceRange:
        start, end = self.range_of(first), self.range_of(last)
        return start.model_copy(update={"end_line": end.end_line, "end_column": end.end_column})

    # -- structure ----------------------------------------------------------------------------

    def body(self, tree: Tree[Any]) -> Body:
        attributes: dict[str, Attribute] = {}
        blocks: list[Block] = []
        for child in _significant(tree.children):
            if child.data == "attribute":
                attribute = self.attribute(child)
                first = attributes.get(attribute.name)
                if first is not None:
                    self.diagnostics.error(
                        "Duplicate argument",
                        f"The argument `{attribute.name}` was already set at {first.name_range}. Each argument "
                        "may be set only once in a block; remove one of them.",
                        range=attribute.name_range,
                    )
                    continue
                attributes[attribute.name] = attribute
            elif child.data == "block":
                blocks.append(self.block(child))
        return Body(attributes=attributes, blocks=tuple(blocks))

    def attribute(self, tree: Tree[Any]) -> Attribute:
        name_node, _eq, value = tree.children[0], tree.children[1], tree.children[2]
        expr = self.expr(value)
        return Attribute(
            name=_word(name_node), name_range=self.range_of(name_node), expr=expr, range=self.span(name_node, value)
        )

    def block(self, tree: Tree[Any]) -> Block:
        children = [c for c in tree.children if not (isinstance(c, Tree) and c.data == "new_line_or_comment")]
        type_node = children[0]
        labels: list[str] = []
        label_ranges: list[SourceRange] = []
        body_tree: Tree[Any] | None = None
        closing: Token | None = None
        for child in children[1:]:
            if isinstance(child, Tree) and child.data == "body":
                body_tree = child
            elif isinstance(child, Tree) and child.data == "string":
                labels.append(self.label(child))
                label_ranges.append(self.range_of(child))
            elif isinstance(child, Tree):
                labels.append(_word(child))
                label_ranges.append(self.range_of(child))
            elif isinstance(child, Token) and child.type == "RBRACE":
                closing = child
        assert body_tree is not None
        return Block(
            type=_word(type_node),
            labels=tuple(labels),
            label_ranges=tuple(label_ranges),
            body=self.body(body_tree),
            range=self.range_of(type_node),
            end_range=self.range_of(closing) if closing is not None else self.range_of(type_node),
        )

    def label(self, tree: Tree[Any]) -> str:
        template = self.string(tree)
        if isinstance(template, Literal):
            return str(template.value)
        raise _SyntaxProblem(
            "Invalid block label",
            "Block labels must be plain quoted strings; they cannot contain `${...}` interpolation. "
            "Write the label as literal text.",
            self.range_of(tree),
        )

    # -- expressions --------------------------------------------------------------------------

    def expr(self, node: Tree[Any] | Token) -> Expr:
        if isinstance(node, Token):
            raise _SyntaxProblem("Invalid expression", "This token cannot stand here.", self.range_of(node))
        method = getattr(self, f"expr_{node.data}", None)
        if method is None:
            return Unsupported(range=self.range_of(node), what=f"the `{node.data}` construct")
        result: Expr = method(node)
        return result

    def expr_expr_term(self, tree: Tree[Any]) -> Expr:
        children = list(_significant(tree.children, keep_tokens=True))
        if isinstance(children[0], Token) and children[0].type == "LPAR":
            inner = self.expr(children[1])
            return inner
        return self.expr(children[0])

    def expr_int_lit(self, tree: Tree[Any]) -> Expr:
        return Literal(range=self.range_of(tree), value=self.whole_number(tree.children[0]))

    def whole_number(self, token: Any) -> int:
        text = str(token)
        if len(text.lstrip("0")) > MAX_NUMBER_DIGITS:
            raise _SyntaxProblem(
                "Number too long",
                f"This number has {len(text)} digits; keyplan reads numbers of at most {MAX_NUMBER_DIGITS} digits. "
                "Write a smaller number, or a string if it is an identifier.",
                self.range_of(token),
            )
        return int(text)

    def expr_float_lit(self, tree: Tree[Any]) -> Expr:
        text = str(tree.children[0])
        value = float(text)
        if not math.isfinite(value) or len(text) > 4 * MAX_NUMBER_DIGITS:
            raise _SyntaxProblem(
                "Number out of range",
                f"This number is too large to be represented (at most about 1.8e308, written in at most "
                f"{4 * MAX_NUMBER_DIGITS} characters). Write a smaller number.",
                self.range_of(tree),
            )
        return Literal(range=self.range_of(tree), value=int(value) if value.is_integer() else value)

    def expr_literal_value(self, tree: Tree[Any]) -> Expr:
        word = str(tree.children[0])
        return Literal(range=self.range_of(tree), value={"true": True, "false": False, "null": None}[word])

    def expr_identifier(self, tree: Tree[Any]) -> Expr:
        return Name(range=self.range_of(tree), name=str(tree.children[0]))

    def expr_string(self, tree: Tree[Any]) -> Expr:
        return self.string(tree)

    def string(self, tree: Tree[Any]) -> Expr:
        parts: list[str | Expr] = []
        for child in tree.children:
            if not (isinstance(child, Tree) and child.data == "string_part"):
                continue
            part = child.children[0]
            if isinstance(part, Token):
                if part.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    # `$${ ... }` / `%%{ ... }` arrive as one token, escapes inside included
                    parts.append(_unescape(str(part)[1:]))
                else:
                    parts.append(_unescape(str(part)))
            elif part.data == "interpolation":
                parts.append(self.expr(next(_significant(part.children))))
            else:
                return Unsupported(range=self.range_of(part), what="template directives (`%{ ... }`)")
        merged: list[str | Expr] = []
        for piece in parts:
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            else:
                merged.append(piece)
        range = self.range_of(tree)
        if all(isinstance(p, str) for p in merged):
            return Literal(range=range, value="".join(p for p in merged if isinstance(p, str)))
        return Template(range=range, parts=tuple(merged))

    def expr_heredoc_template(self, tree: Tree[Any]) -> Expr:
        return self._heredoc(tree, trim=False)

    def expr_heredoc_template_trim(self, tree: Tree[Any]) -> Expr:
        return self._heredoc(tree, trim=True)

    def _heredoc(self, tree: Tree[Any], *, trim: bool) -> Expr:
        lines = str(tree.children[0]).rstrip("\r\n").split("\n")
        body = lines[1:-1]
        if trim:
            indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
            cut = min(indents, default=0)
            body = [line[cut:] for line in body]
        text = "".join(line.rstrip("\r") + "\n" for line in body)
        if "${" in text.replace("$${", "") or "%{" in text.replace("%%{", ""):
            return Unsupported(range=self.range_of(tree), what="interpolation inside heredoc strings")
        return Literal(range=self.range_of(tree), value=text.replace("$${", "${").replace("%%{", "%{"))

    def expr_template_string(self, tree: Tree[Any]) -> Expr:
        return Unsupported(range=self.range_of(tree), what="template directives (`%{ ... }`)")

    def expr_tuple(self, tree: Tree[Any]) -> Expr:
        items = tuple(self.expr(c) for c in _significant(tree.children))
        return TupleExpr(range=self.range_of(tree), items=items)

    def expr_object(self, tree: Tree[Any]) -> Expr:
        items: list[ObjectItem] = []
        for elem in _significant(tree.children):
            key_node = elem.children[0]
            value_node = elem.children[2]
            items.append(ObjectItem(key=self.object_key(key_node), value=self.expr(value_node)))
        return ObjectExpr(range=self.range_of(tree), items=tuple(items))

    def object_key(self, tree: Tree[Any]) -> Expr:
        inner = tree.children[0]
        if isinstance(inner, Tree) and inner.data == "keyword":
            return Literal(range=self.range_of(inner), value=_word(inner))
        # A bare identifier names the key itself; anything else (parentheses included) is evaluated.
        if isinstance(inner, Tree) and inner.data == "expr_term":
            first = inner.children[0]
            if isinstance(first, Tree) and first.data == "identifier":
                return Literal(range=self.range_of(first), value=str(first.children[0]))
            if isinstance(first, Tree) and first.data == "literal_value":
                return Literal(range=self.range_of(first), value=str(first.children[0]))
        return self.expr(inner)

    def expr_function_call(self, tree: Tree[Any]) -> Expr:
        children = list(tree.children)
        name_node = children[0]
        name = str(name_node.children[0])
        if any(isinstance(c, Token) and c.type == "COLONS" for c in children):
            parts = [str(c.children[0]) for c in children if isinstance(c, Tree) and c.data == "identifier"]
            name = "::".join(parts)
        args: tuple[Expr, ...] = ()
        expand = False
        for child in children:
            if isinstance(child, Tree) and child.data == "arguments":
                args = tuple(self.expr(a) for a in _significant(child.children))
                expand = any(isinstance(a, Token) and a.type == "ELLIPSIS" for a in child.children)
        return Call(
            range=self.range_of(tree), name=name, name_range=self.range_of(name_node), args=args, expand_last=expand
        )

    def expr_get_attr_expr_term(self, tree: Tree[Any]) -> Expr:
        target = self.expr(tree.children[0])
        get_attr = tree.children[1]
        name_node = get_attr.children[1]
        return GetAttr(
            range=self.range_of(tree), target=target, name=_word(name_node), name_range=self.range_of(name_node)
        )

    def expr_index_expr_term(self, tree: Tree[Any]) -> Expr:
        target = self.expr(tree.children[0])
        return Index(range=self.range_of(tree), target=target, key=self.index_key(tree.children[1]))

    def index_key(self, tree: Tree[Any]) -> Expr:
        if tree.data == "short_index":
            token = tree.children[1]
            return Literal(range=self.range_of(token), value=self.whole_number(token))
        return self.expr(next(_significant(tree.children)))

    def expr_attr_splat_expr_term(self, tree: Tree[Any]) -> Expr:
        return self._splat(tree)

    def expr_full_splat_expr_term(self, tree: Tree[Any]) -> Expr:
        return self._splat(tree)

    def _splat(self, tree: Tree[Any]) -> Expr:
        target = self.expr(tree.children[0])
        steps: list[tuple[str, Expr | str]] = []
        for step in _significant(tree.children[1].children):
            if step.data == "get_attr":
                steps.append(("attr", _word(step.children[1])))
            else:
                steps.append(("index", self.index_key(step)))
        return Splat(range=self.range_of(tree), target=target, steps=tuple(steps))

    def expr_conditional(self, tree: Tree[Any]) -> Expr:
        condition, if_true, if_false = list(_significant(tree.children))
        return Conditional(
            range=self.range_of(tree),
            condition=self.expr(condition),
            if_true=self.expr(if_true),
            if_false=self.expr(if_false),
        )

    def expr_binary_op(self, tree: Tree[Any]) -> Expr:
        left, term = list(_significant(tree.children))[:2]
        operator_tree, right = list(_significant(term.children))[:2]
        operator = str(operator_tree.children[0]).split()[-1]
        return Binary(range=self.range_of(tree), operator=operator, left=self.expr(left), right=self.expr(right))

    def expr_unary_op(self, tree: Tree[Any]) -> Expr:
        operator = str(tree.children[0]).strip()
        return Unary(range=self.range_of(tree), operator=operator, operand=self.expr(tree.children[1]))

    def expr_for_tuple_expr(self, tree: Tree[Any]) -> Expr:
        parts = list(_significant(tree.children))
        key_var, value_var, collection = self.for_intro(parts[0])
        condition = self.for_cond(parts[-1]) if parts[-1].data == "for_cond" else None
        return ForExpr(
            range=self.range_of(tree),
            key_var=key_var,
            value_var=value_var,
            collection=collection,
            key=None,
            value=self.expr(parts[1]),
            condition=condition,
        )

    def expr_for_object_expr(self, tree: Tree[Any]) -> Expr:
        parts = list(_significant(tree.children))
        key_var, value_var, collection = self.for_intro(parts[0])
        condition = self.for_cond(parts[-1]) if parts[-1].data == "for_cond" else None
        group = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in tree.children)
        return ForExpr(
            range=self.range_of(tree),
            key_var=key_var,
            value_var=value_var,
            collection=collection,
            key=self.expr(parts[1]),
            value=self.expr(parts[2]),
            condition=condition,
            group=group,
        )

    def for_intro(self, tree: Tree[Any]) -> tuple[str | None, str, Expr]:
        names = [str(c.children[0]) for c in tree.children if isinstance(c, Tree) and c.data == "identifier"]
        expression = [
            c for c in tree.children if isinstance(c, Tree) and c.data not in ("identifier", "new_line_or_comment")
        ][0]
        if len(names) == 2:
            return names[0], names[1], self.expr(expression)
        return None, names[0], self.expr(expression)

    def for_cond(self, tree: Tree[Any]) -> Expr:
        return self.expr(next(_significant(tree.children)))


def _significant(children: list[Any], *, keep_tokens: bool = False) -> Any:
    """Children that carry meaning: subtrees other than line breaks and comments (and, when
    asked, punctuation tokens too)."""
    for child in children:
        if isinstance(child, Tree):
            if child.data != "new_line_or_comment":
                yield child
        elif keep_tokens and child.type != "NL_OR_COMMENT":
            yield child


def _word(node: Tree[Any] | Token) -> str:
    if isinstance(node, Token):
        return str(node)
    return str(node.children[0]) if node.children else ""


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, "\\" + code)

    return _ESCAPE_RE.sub(replace, text)


def quoted(text: str) -> str:
    """A string as it would be written in HCL, for messages (control characters escaped)."""
    return for_terminal(json.dumps(text, ensure_ascii=False))
