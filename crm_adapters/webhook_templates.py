"""Templates for the custom webhook: sandboxed Jinja with a fixed set of variables.

A site owner writes ``{{contact.email}}`` in a URL, header, query value or body string. These
templates come from configuration, so they run in Jinja's ``SandboxedEnvironment`` (no
attribute walking to Python internals, bounded ``range``, and here also bounded ``*``/``**`` so
``{{'a' * 10**9}}`` cannot eat the worker's memory), with ``StrictUndefined``.

What a template may contain (expressions and ``{% if %}``, no loops, macros, calls or globals;
bounded output) is ``crm_adapters.template_limits``, checked at save and again at compile.
Variables are checked when the connection is saved (:func:`template_problems`): every variable
path in every template is read from Jinja's AST and must be one of :data:`ALLOWED`, or anything
below ``contact.meta`` / ``contact.fields``. ``user.`` is a synonym of ``contact.``. At render
time a missing ``meta``/``fields`` key is null (an empty string inside text), not an error: the
set of keys varies per user, the set of variables does not.

A body string that is exactly one ``{{ … }}`` keeps the value's JSON type (list, number, bool,
null, object); any other string renders to a string.

This module lives beside the adapter, not in ``bridge/``: adapters import no Flask, and
importing anything from ``bridge`` imports Flask.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from crm_adapters import template_limits

CONTACT_KEYS = frozenset(
    {"id", "email", "first_name", "last_name", "username", "tags", "meta", "fields", "created_at", "role", "user_id"}
)
OPEN_KEYS = frozenset({"meta", "fields"})  # any key below these is allowed
EVENT_KEYS = frozenset({"type", "id", "occurred_at"})
ROOTS = ("contact", "user", "event")
ALLOWED = sorted(
    [f"contact.{key}" for key in CONTACT_KEYS - OPEN_KEYS]
    + [f"event.{key}" for key in EVENT_KEYS]
    + ["contact.meta.KEY", "contact.fields.NAME"]
)
MAX_REPEAT = 10_000
MAX_EXPONENT = 64
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateRenderError(ValueError):
    """A template could not be rendered (sandbox refusal, bad operation on a value)."""


def _finalize(value: Any) -> Any:
    return "" if value is None else value


class _WebhookEnvironment(SandboxedEnvironment):
    """Dict keys before dict methods (``contact.meta.items`` is the meta key ``items``), missing
    keys are null, and string/list repetition and powers are bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            return obj.get(attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            return obj.get(argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError("exponent too large")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and count * len(seq) > MAX_REPEAT:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


ENVIRONMENT = _WebhookEnvironment(undefined=StrictUndefined, autoescape=False, finalize=_finalize)
ENVIRONMENT.globals.clear()  # range, lipsum, namespace, cycler, joiner, dict: none is a variable
ENVIRONMENT.filters = {
    **{name: f for name, f in ENVIRONMENT.filters.items() if name in template_limits.ALLOWED_FILTERS},
    "join": template_limits.bounded_join,
    "replace": template_limits.bounded_replace,
}


# -- checking ---------------------------------------------------------------------------------


def single_expression(source: str) -> str | None:
    """The expression when ``source`` is exactly one ``{{ … }}`` (typed rendering), else None."""
    match = _SINGLE_EXPRESSION.match(source)
    if not match:
        return None
    expression = match.group("expr")
    if "{{" in expression or "}}" in expression or "{%" in source or "{#" in source:
        return None
    return expression


def template_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(location, source) for every string in a nested JSON value; keys are literal."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from template_strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from template_strings(item, f"{where}[{index}]")


def _path(node: nodes.Node) -> tuple[str, ...] | None:
    """The dotted path a Name/Getattr/Getitem chain reads, when rooted at one of ROOTS."""
    if isinstance(node, nodes.Name):
        return (node.name,) if node.name in ROOTS else None
    if isinstance(node, nodes.Getattr):
        inner = _path(node.node)
        return (*inner, node.attr) if inner else None
    if isinstance(node, nodes.Getitem):
        inner = _path(node.node)
        if not inner:
            return None
        key = node.arg.value if isinstance(node.arg, nodes.Const) else "*"
        return (*inner, str(key))
    return None


def variable_paths(source: str) -> list[tuple[str, ...]]:
    """Every variable path a template reads (parsed, not rendered). Raises TemplateSyntaxError."""
    found: list[tuple[str, ...]] = []

    def visit(node: nodes.Node) -> None:
        path = _path(node)
        if path is not None:
            found.append(path)
            if isinstance(node, nodes.Getitem):
                visit(node.arg)  # contact.meta[event.type] reads event.type too
            return
        for child in node.iter_child_nodes():
            visit(child)

    tree = ENVIRONMENT.parse(source)
    # Every name, not only undeclared ones: Jinja counts its globals (range, self) as declared.
    unknown_roots = (meta.find_undeclared_variables(tree) | {n.name for n in tree.find_all(nodes.Name)}) - set(ROOTS)
    found.extend((name,) for name in sorted(unknown_roots))
    visit(tree)
    return found


def path_allowed(path: tuple[str, ...]) -> bool:
    root, rest = path[0], path[1:]
    if root in ("contact", "user"):
        if not rest:
            return True
        if rest[0] in OPEN_KEYS:
            return True
        return len(rest) == 1 and rest[0] in CONTACT_KEYS
    if root == "event":
        return not rest or (len(rest) == 1 and rest[0] in EVENT_KEYS)
    return False


def template_problems(value: Any, where: str) -> list[str]:
    """Sentences naming each unknown variable or syntax error in the templates of ``value``."""
    problems: list[str] = []
    for location, source in template_strings(value, where):
        if "{" not in source:
            continue
        try:
            paths = variable_paths(source)
        except TemplateSyntaxError as exc:
            problems.append(f"{location}: template syntax error: {exc.message}")
            continue
        refused = template_limits.structure_problems(ENVIRONMENT.parse(source))
        problems += [f"{location}: {problem}" for problem in refused]
        for path in paths:
            if not path_allowed(path):
                name = ".".join(path)
                problems.append(
                    f"{location}: unknown variable {name!r} (known: {', '.join(ALLOWED)}; user. = contact.)"
                )
    return problems


# -- rendering --------------------------------------------------------------------------------


def _checked(source: str) -> None:
    """Refuse what ``template_limits`` refuses before compiling: a template stored before the
    save-time check existed must not run either."""
    problems = template_limits.structure_problems(ENVIRONMENT.parse(source))
    if problems:
        raise SecurityError("; ".join(problems))


@functools.lru_cache(maxsize=512)
def _compiled_template(source: str) -> Any:
    _checked(source)
    return ENVIRONMENT.from_string(source)


@functools.lru_cache(maxsize=512)
def _compiled_expression(expression: str) -> Any:
    _checked("{{" + expression + "}}")
    return ENVIRONMENT.compile_expression(expression, undefined_to_none=False)


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        template_limits.check_size(len(value), "the rendered template")
    return value


def to_json_value(value: Any) -> Any:
    """A rendered value as plain JSON data (tuples → lists, unknown objects → strings)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str(value)  # Markup and other str subclasses
    if isinstance(value, Undefined):
        return None
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(item) for item in value]
    return str(value)


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """A template rendered to a string. Raises TemplateRenderError."""
    if "{" not in source:
        return source
    try:
        return _bounded(_compiled_template(source).render(context))
    except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateRenderError(f"{exc.__class__.__name__}: {exc}") from exc


def render_typed(source: str, context: Mapping[str, Any]) -> Any:
    """Exactly one ``{{ … }}`` keeps the value's JSON type; anything else renders as text."""
    expression = single_expression(source)
    if expression is None:
        return render_text(source, context)
    try:
        return _bounded(to_json_value(_compiled_expression(expression)(**context)))
    except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateRenderError(f"{exc.__class__.__name__}: {exc}") from exc


def render_json(value: Any, context: Mapping[str, Any]) -> Any:
    """Every string in a nested JSON value rendered (typed); keys and non-strings kept."""
    if isinstance(value, str):
        return render_typed(value, context)
    if isinstance(value, Mapping):
        return {key: render_json(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_json(item, context) for item in value]
    return value
