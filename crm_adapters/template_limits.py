"""What a custom webhook template may contain, so rendering one costs little CPU and memory.

Jinja's sandbox stops attribute walks to Python internals, but not work: three nested
``{% for %}`` over ``'x'*10000``, ``'x'.ljust(10**9)`` (a gigabyte before any size check),
``lipsum(n=100000)`` or a recursive macro all pass it and burn a delivery worker. A webhook
template only has to place the documented variables into a request, so it is held to that:

* expressions (``{{ … }}``) and ``{% if %}`` over the variables, literals, operators and the
  filters in :data:`ALLOWED_FILTERS`; no loops, macros, blocks, assignments, includes, and no
  calls at all (no globals such as ``range``/``lipsum``/``namespace``/``cycler``, no methods);
* products are bounded: ``*``/``**`` (``webhook_templates``), and here ``join``/``replace``,
  whose result size is known before it is built, and ``%`` string formatting is refused;
* a rendered template longer than :data:`MAX_OUTPUT_CHARS` is refused.

With no loops or recursion, the work a template does is bounded by its own size, so the same
check refuses a template when a connection is saved and when a stored one is compiled (a
template saved before these rules never runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.filters import do_join, do_replace
from jinja2.sandbox import SecurityError
from jinja2.utils import pass_eval_context

MAX_OUTPUT_CHARS = 1_000_000

ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int", "join",
        "last", "length", "list", "lower", "max", "min", "replace", "reverse", "round", "sort", "string",
        "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
    }
)  # fmt: skip

# Expression nodes plus the statements that only choose between outputs ({% if %}, {% raw %}).
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If,
    nodes.Const, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Slice,
    nodes.Filter, nodes.Test, nodes.CondExpr, nodes.Compare, nodes.Operand,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Concat,
    nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow,
    nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Keyword,
)  # fmt: skip

_STATEMENT_NAMES = {
    nodes.For: "{% for %} loops",
    nodes.Macro: "macros",
    nodes.CallBlock: "{% call %} blocks",
    nodes.Block: "blocks",
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}",
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% import %}",
    nodes.FilterBlock: "{% filter %} blocks",
    nodes.With: "{% with %}",
}


def structure_problems(tree: nodes.Template) -> list[str]:
    """Why a parsed template may not run (empty when it may): each refused construct once."""
    problems: list[str] = []
    for node in _walk(tree):
        problem = _node_problem(node)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _node_problem(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Call):
        return 'function and method calls are not allowed (use a filter: |upper, |join(","))'
    if isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and isinstance(node.left.value, str):
        return "string formatting with % is not allowed (use ~ to join text)"
    if isinstance(node, nodes.Filter):
        if node.name not in ALLOWED_FILTERS:
            return f"filter {node.name!r} is not allowed (allowed: {', '.join(sorted(ALLOWED_FILTERS))})"
        return None
    if isinstance(node, _ALLOWED_NODES):
        return None
    what = next((name for kind, name in _STATEMENT_NAMES.items() if isinstance(node, kind)), None)
    what = what or f"{node.__class__.__name__} nodes"
    return f"{what} are not allowed: a template is {{{{ expressions }}}} over the variables"


def check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise SecurityError(f"{what} would be over {MAX_OUTPUT_CHARS} characters")


@pass_eval_context
def bounded_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    """``|join`` that refuses a result over the limit before building it."""
    items = list(value)
    check_size(sum(len(str(item)) for item in items) + max(0, len(items) - 1) * len(str(d)), "join")
    return str(do_join(eval_ctx, items, d, attribute))


@pass_eval_context
def bounded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    """``|replace`` that refuses a result over the limit before building it."""
    text, old, new = str(s), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if count is not None:
        times = min(times, max(0, count))
    check_size(len(text) + times * max(0, len(new) - len(old)), "replace")
    return str(do_replace(eval_ctx, text, old, new, count))
