"""Expressions and functions, evaluated by the real evaluator on parsed HCL."""

from __future__ import annotations

from typing import Any

import pytest

from keyplan.config.expressions import Evaluator, Scope
from keyplan.config.failures import EvaluationError
from keyplan.config.syntax import parse_expression
from keyplan.config.values import SetValue, plain
from keyplan.diagnostics import Diagnostics

SCOPE = Scope(
    variables={"m": {"a": 1, "b": 2}, "l": ["x", "y"], "s": "hi"},
    locals={"objs": [{"n": "p"}, {"n": "q"}]},
    sources=frozenset({"software.main"}),
    providers=frozenset({"aws.main"}),
)


def evaluate(text: str, scope: Scope = SCOPE) -> Any:
    diagnostics = Diagnostics()
    expr = parse_expression(text, "expr.hcl", diagnostics)
    assert expr is not None, [str(d) for d in diagnostics]
    return Evaluator(scope).evaluate(expr)


def error(text: str, scope: Scope = SCOPE) -> tuple[str, str, str]:
    """(summary, column, detail) of the evaluation error; columns count from the `value = `
    prefix the parser is given, so the expression starts at column 9."""
    with pytest.raises(EvaluationError) as caught:
        evaluate(text, scope)
    diagnostic = caught.value.diagnostic
    assert diagnostic is not None and diagnostic.range is not None
    return diagnostic.summary, f"{diagnostic.range.line}:{diagnostic.range.column}", diagnostic.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # collections
        ('toset(["b", "a", "b"])', ["a", "b"]),
        ('setproduct(toset(["p", "l"]), ["dev", "prod"])', [["l", "dev"], ["l", "prod"], ["p", "dev"], ["p", "prod"]]),
        ('setproduct(toset(["a"]), toset(["x", "y"]))', [["a", "x"], ["a", "y"]]),
        ("merge({a = 1}, {b = 2}, null, {a = 3})", {"a": 3, "b": 2}),
        ("merge()", {}),
        ("concat([1], [2, 3], [])", [1, 2, 3]),
        ("flatten([[1, [2]], 3, []])", [1, 2, 3]),
        ("keys({b = 1, a = 2})", ["a", "b"]),
        ("values({b = 1, a = 2})", [2, 1]),
        ('lookup(var.m, "a")', 1),
        ('lookup(var.m, "z", 9)', 9),
        ('length("héllo")', 5),
        ("length(var.l)", 2),
        ("length(var.m)", 2),
        ('length(toset(["a", "a"]))', 1),
        ('contains(["a", "b"], "b")', True),
        ('contains(["a"], 1)', False),
        ('contains(toset(["1"]), "1")', True),
        ('tolist(toset(["b", "a"]))', ["a", "b"]),
        ("tomap({a = 1})", {"a": 1}),
        ('coalesce(null, "", "x")', "x"),
        ('distinct(["a", "b", "a"])', ["a", "b"]),
        ('sort(["b", "a"])', ["a", "b"]),
        ("range(3)", [0, 1, 2]),
        ('element(["a", "b"], 3)', "b"),
        # strings
        ('lower("ABC")', "abc"),
        ('upper("abc")', "ABC"),
        ('trimspace("  a ")', "a"),
        ('join("-", ["a", "b", "c"])', "a-b-c"),
        ('join(",", [])', ""),
        ('split(",", "a,b,c")', ["a", "b", "c"]),
        ('replace("a.b.c", ".", "/")', "a/b/c"),
        ('replace("hello world", "/o(\\\\w)/", "0$1")', "hello w0rld"),
        ("tostring(3)", "3"),
        ("tostring(true)", "true"),
        ("tostring(1.5)", "1.5"),
        ('format("%s-%d-%q-%v-%t", "a", 3, "q", true, false)', 'a-3-"q"-true-false'),
        ('format("%05d|%-4s|%4s|%%|%.2f|%x", 42, "x", "y", 3.14159, 255)', "00042|x   |   y|%|3.14|ff"),
        ('format("%v", ["a"])', '["a"]'),
        # templates
        ('"a${var.s}b"', "ahib"),
        ('"${1 + 1} ${true} ${1.5}"', "2 true 1.5"),
        ('"escaped $${x} and %%{y}"', "escaped ${x} and %{y}"),
        ('"$${ \\"q\\" }"', '${ "q" }'),
        ('"quote \\" newline \\n unicode \\u00e9"', 'quote " newline \n unicode é'),
        # references
        ("var.m.a", 1),
        ('var.m["b"]', 2),
        ("var.l[1]", "y"),
        ("var.l.0", "x"),
        ("local.objs[*].n", ["p", "q"]),
        ("local.objs.*.n", ["p", "q"]),
        ("source.software.main", "software.main"),
        ("provider.aws.main", "aws.main"),
        ("[provider.aws.main, source.software.main]", ["aws.main", "software.main"]),
        # operators and conditionals
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("-(2 - 5)", 3),
        ('"3" + 1', 4),
        ("1 == 1.0", True),
        ("1 == true", False),
        ('"a" != "b"', True),
        ("[1, 2] == [1, 2]", True),
        ("{a = 1} == {a = 1}", True),
        ("2 >= 2 && 1 < 2 && 3 > 2 && 1 <= 0", False),
        ("true && false || true", True),
        ("!false", True),
        ('3 > 2 ? "y" : "n"', "y"),
        ('false ? var.nope : "short-circuit"', "short-circuit"),
        ("null == null", True),
        # for expressions
        ("[for x in var.l : upper(x)]", ["X", "Y"]),
        ('[for i, x in var.l : "${i}=${x}" if x != "y"]', ["0=x"]),
        ("{for k, v in var.m : k => v * 10}", {"a": 10, "b": 20}),
        ('{for x in ["a", "b", "a"] : x => x...}', {"a": ["a", "a"], "b": ["b"]}),
        ('[for x in toset(["b", "a"]) : x]', ["a", "b"]),
        ("[for k, v in {b = 1, a = 2} : k]", ["a", "b"]),
        ('{for s in var.l : s => [for t in var.l : "${s}${t}" if t != s]}', {"x": ["xy"], "y": ["yx"]}),
        # one scope per for expression, rebound per element: an inner one that shadows a name leaves it
        ('[for x in var.l : [[for x in ["z"] : x], x]]', [[["z"], "x"], [["z"], "y"]]),
        ('[for i, x in var.l : [for j, y in var.l : "${i}${x}${j}${y}" if j >= i]]', [["0x0x", "0x1y"], ["1y1y"]]),
        ("concat([var.l, [\"z\"]]...)", ["x", "y", "z"]),
        ('format("%s-%s", var.l...)', "x-y"),
        # heredoc
        ("<<EOT\nline\nEOT\n", "line\n"),
        ("<<-EOT\n    indented\n      more\n    EOT\n", "indented\n  more\n"),
    ],
)
def test_expression_values(text: str, expected: Any) -> None:
    result = evaluate(text)
    assert plain(result) == expected
    assert type(result) is type(expected) or isinstance(expected, list)


def test_toset_is_a_set_and_lists_are_lists() -> None:
    assert isinstance(evaluate('toset(["a"])'), SetValue)
    assert not isinstance(evaluate('["a"]'), SetValue)
    assert isinstance(evaluate('setproduct(toset(["a"]), toset(["b"]))'), SetValue)


@pytest.mark.parametrize(
    ("text", "summary", "at", "hint"),
    [
        ('lenght("x")', "Call to unknown function", "1:9", "Did you mean length?"),
        ("nosuch(1)", "Call to unknown function", "1:9", "available functions are"),
        ("length()", "Wrong number of arguments", "1:9", "length(value)"),
        ('lookup({}, "a", 1, 2)', "Wrong number of arguments", "1:9", "lookup(map, key, default)"),
        ('lookup(var.m, "z")', "Invalid arguments to lookup()", "1:23", "no default"),
        ("upper([1])", "Invalid arguments to upper()", "1:15", "must be a string"),
        ('merge({}, "x")', "Invalid arguments to merge()", "1:19", "must be a map"),
        ('format("%d", "x")', "Invalid arguments to format()", "1:22", "%d needs a number"),
        ('format("%s %s", "a")', "Invalid arguments to format()", "1:16", "more verbs"),
        ('format("%s", "a", "b")', "Invalid arguments to format()", "1:16", "too many values"),
        ('split("", "a")', "Invalid arguments to split()", "1:15", "separator"),
        ("keys([1])", "Invalid arguments to keys()", "1:14", "must be a map"),
        ('concat("a"...)', "Invalid expanding argument", "1:16", "list or set"),
        ("var.nope", "Reference to undeclared variable", "1:9", "Declare it"),
        ("var.mm", "Reference to undeclared variable", "1:9", "Did you mean var.m?"),
        ("local.obj", "Reference to undeclared local value", "1:9", "Did you mean local.objs?"),
        ("each.key", "Reference to `each` outside for_each", "1:9", "for_each"),
        ("vars.m", "Unknown name", "1:9", "Did you mean var?"),
        ("var", "Invalid reference", "1:9", "var.NAME"),
        ("source.software", "Incomplete reference", "1:9", "source.software.NAME"),
        ("source.softwar.main", "Reference to undeclared source", "1:9", "Did you mean source.software.main?"),
        ("provider.aws.mian", "Reference to undeclared provider", "1:9", "Did you mean provider.aws.main?"),
        ("var.m.z", "Unsupported attribute", "1:15", "lookup(map, key, default)"),
        ("var.l.x", "Unsupported attribute", "1:15", "maps and objects"),
        ("var.l[5]", "Index out of range", "1:15", "from 0 to 1"),
        ('toset(["a"])[0]', "Invalid index", "1:22", "tolist()"),
        ('"${var.m}"', "Invalid template interpolation value", "1:12", "map cannot be inserted"),
        ('"${null}"', "Invalid template interpolation value", "1:12", "null"),
        ('"x" ? 1 : 2', "Expected a bool", "1:9", "true or false"),
        ('"x" + 1', "Expected a number", "1:9", "`+`"),
        ("1 / 0", "Division by zero", "1:13", "zero"),
        ("{a = 1, a = 2}", "Duplicate map key", "1:17", "appears more than once"),
        ('{for x in ["a", "a"] : x => x}', "Duplicate map key", "1:32", "`...`"),
        ("[for x in 3 : x]", "Invalid for expression source", "1:19", "list, set or map"),
        ('[for x in var.l : x if x]', "Expected a bool", "1:32", "`if` condition"),
        ('"%{ if true }x%{ endif }"', "Unsupported expression", "1:10", "template directives"),
        ("<<EOT\n${var.s}\nEOT\n", "Unsupported expression", "1:9", "heredoc"),
    ],
)
def test_expression_errors(text: str, summary: str, at: str, hint: str) -> None:
    got_summary, got_at, detail = error(text)
    assert (got_summary, got_at) == (summary, at)
    assert hint in detail
    assert detail.rstrip().endswith((".", "?"))
