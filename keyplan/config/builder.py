"""From python-hcl2's Lark parse tree of one file to keyplan's syntax tree (`keyplan.config.tree`),
with positions kept and problems python-hcl2's grammar lets through (numbers too long to read,
tokens that cannot stand where they are) raised as `SyntaxProblem`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lark import Token, Tree

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
)
from keyplan.diagnostics import Diagnostics, SourceRange

MAX_NUMBER_DIGITS = 100  # far beyond any count or size in a key configuration


class SyntaxProblem(Exception):
    def __init__(self, summary: str, detail: str, range: SourceRange) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.range = range


MAX_NUMBER_DIGITS = 100  # far beyond any count or size in a key configuration

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


class TreeBuilder:
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
        raise SyntaxProblem(
            "Invalid block label",
            "Block labels must be plain quoted strings; they cannot contain `${...}` interpolation. "
            "Write the label as literal text.",
            self.range_of(tree),
        )

    # -- expressions --------------------------------------------------------------------------

    def expr(self, node: Tree[Any] | Token) -> Expr:
        if isinstance(node, Token):
            raise SyntaxProblem("Invalid expression", "This token cannot stand here.", self.range_of(node))
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
            raise SyntaxProblem(
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
            raise SyntaxProblem(
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


