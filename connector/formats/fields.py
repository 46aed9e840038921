"""One mapping rule compiled into code that sets a local from the decoded payload: the
checked value, or a ``MappingError`` naming the key and the rule.

This is the per-record hot path of every mapped format, so each mapping is compiled into the
Python source of one function (``rules.Rules``) and a ``{path: …}`` rule becomes a few lines
of it: the path's steps as direct subscripts inside one ``try`` (names as string literals
written with ``repr``; an index step is preceded by a list check, since a string would take
it too), then an inline test that accepts the common case (a non-empty string for text, a
string for a dimension) without a call.  Anything else goes through the key's check
function, the one definition of what is accepted; the inline tests only accept values that
check would return unchanged.  An expression calls JMESPath; a constant is checked once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from connector.errors import MappingError
from connector.formats.config import Rule
from connector.formats.native import check_number, check_time_ms
from connector.formats.paths import Step, expr_getter, parse_path

Check = Callable[[Any, str], Any]
Read = Callable[["PathRead"], list[str]]
"""Renders a path read (``PathRead``) as lines that set its target."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_fromisoformat = datetime.fromisoformat


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", float: "non-finite number"}.get(
        type(value), type(value).__name__
    )


def text(value: Any, field: str) -> str:
    """customer_id, meter, unique_id: a non-empty string; an integer as its decimal text."""
    if type(value) is int:
        return str(value)
    if type(value) is not str or not value:
        raise MappingError(field, f"must be a non-empty string (got {_kind(value)} {value!r})")
    return value


def dimension_text(value: Any, field: str) -> str:
    """A dimension value as Amberflo's text: strings as they are, numbers in their shortest
    form, booleans as true/false; anything else is a MappingError."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return str(value)
    raise MappingError(field, f"must be a string, number or boolean (got {_kind(value)})")


def seconds(value: Any, field: str) -> int:
    """Epoch seconds (fractions rounded to the millisecond) → range-checked milliseconds."""
    if type(value) is int:
        return check_time_ms(value * 1000, field)
    if type(value) is float and math.isfinite(value):
        ms = value * 1000
        if not math.isfinite(ms):  # round() would raise OverflowError: not a RecordError
            raise MappingError(field, f"must be below 2^64 ms (got {value!r} s)")
        return check_time_ms(round(ms), field)
    raise MappingError(field, f"must be epoch seconds (got {_kind(value)} {value!r})")


def iso_ms(value: Any, field: str) -> int:
    """Epoch milliseconds of an ISO-8601 / RFC 3339 time (no zone: UTC), range-checked."""
    if type(value) is not str:
        raise MappingError(field, f"must be an ISO-8601 time (got {_kind(value)} {value!r})")
    try:
        when = _fromisoformat(value)
    except ValueError:
        raise MappingError(field, f"is not an ISO-8601 time ({value!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    since = when - _EPOCH
    ms = since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000
    # a datetime is always below 2^64 ms: only the lower bound can fail
    return ms if ms > 0 else check_time_ms(ms, field)


class Kind(NamedTuple):
    """What a key accepts: ``check`` defines it; ``accept`` is an inline Python test of ``x``
    that is true only for values ``check`` returns unchanged; ``convert`` is an inline test
    and an expression of ``x`` equal to what ``check`` returns whenever the test is true
    (fixed texts, never config).  A property test holds both to ``check``."""

    check: Check
    accept: str | None = None
    convert: tuple[str, str] | None = None
    sure: frozenset[str] = frozenset()
    """Types of values, named as Avro's primitives, that ``accept`` takes whatever the
    value: ``string`` (any ``str``), ``int`` / ``long`` (any ``int`` of 64 bits, signed).  A
    path a writer schema says ends on one of them needs no test (``avro_fused``)."""


_INT64_MIN, _UINT64_END = -(1 << 63), 1 << 64
TEXT = Kind(text, "type(x) is str and x")
DIMENSION = Kind(
    dimension_text, "type(x) is str", ("type(x) is int", "str(x)"), frozenset({"string"})
)
NUMBER = Kind(
    check_number,
    f"type(x) is int and {_INT64_MIN} <= x < {_UINT64_END} or type(x) is float and x - x == 0.0",
    sure=frozenset({"int", "long"}),
)
TIME = {
    "ms": Kind(check_time_ms, f"type(x) is int and 0 < x < {_UINT64_END}"),
    "s": Kind(seconds),
    "iso8601": Kind(iso_ms),
}


def label(key: str, rule: Rule) -> str:
    """How errors name a rule: ``customer_id {path: tenant.id}``."""
    if rule.path is not None:
        return f"{key} {{path: {rule.path}}}"
    if rule.expr is not None:
        return f"{key} {{expr: {rule.expr}}}"
    return key


class PathRead(NamedTuple):
    """A place in a mapping's source where a ``{path: …}`` rule reads its value into ``x``
    and ``checks`` set ``target`` from it: rendered when the function is built
    (``Code.build``), by default as ``chain`` from the decoded ``payload`` and the checks; a
    decoder that knows its fields before the record (an Avro writer schema) renders it from
    the locals it read them into (and without the checks when the value's type is one of
    the kind's ``sure`` types: ``target`` is then the value)."""

    steps: tuple[Step, ...]
    target: str
    sure: frozenset[str]
    checks: tuple[str, ...]


def chain(root: str, steps: tuple[Step, ...]) -> list[str]:
    """Lines setting ``x`` to what ``steps`` find from the expression ``root``, or None: the
    steps as direct subscripts in one ``try``, an index step preceded by a list check (a
    string would take an index too).  The one definition of what a path finds."""
    if not steps:
        return [f"x = {root}"]
    lines = ["try:"]
    expr = root
    for step in steps:
        if isinstance(step, int):
            lines += [f"    x = {expr}", "    if type(x) is not list: raise TypeError"]
            expr = "x"
        expr += f"[{step!r}]"
    return [*lines, f"    x = {expr}", "except (KeyError, IndexError, TypeError):", "    x = None"]


def from_payload(read: PathRead) -> list[str]:
    """How a path reads by default: from the local ``payload``, then the checks."""
    return [*chain("payload", read.steps), *read.checks]


class Code:
    """The Python source of one mapping's function being assembled, and the objects it
    refers to by name (checks, defaults, labels: never spliced into the text)."""

    def __init__(self) -> None:
        self.lines: list[str | PathRead] = []
        self.namespace: dict[str, Any] = {}

    def ref(self, obj: Any, hint: str) -> str:
        name = f"{hint}_{len(self.namespace)}"
        self.namespace[name] = obj
        return name

    def add(self, *lines: str) -> None:
        self.lines.extend("    " + line for line in lines)

    def paths(self) -> list[tuple[Step, ...]]:
        """The steps of every path the lines read, in order."""
        return [line.steps for line in self.lines if isinstance(line, PathRead)]

    def source(
        self,
        header: str,
        head: Sequence[str] = (),
        read: Read = from_payload,
    ) -> str:
        """The function's text: ``header``, then ``head`` (lines at the body's level), then the
        lines, each path read rendered by ``read``."""
        out = [header, *("    " + line for line in head)]
        for line in self.lines:
            if isinstance(line, PathRead):
                out += ["    " + part for part in read(line)]
            else:
                out.append(line)
        return "\n".join(out)

    def build(
        self,
        header: str,
        name: str,
        title: str,
        head: Sequence[str] = (),
        read: Read = from_payload,
        **names: Any,
    ) -> Callable[..., Any]:
        """The function ``name`` defined by ``header``, ``head`` and the lines (see
        ``source``); ``names`` are more objects its code refers to (one source may be built
        with several)."""
        namespace = {**self.namespace, **names}
        exec(compile(self.source(header, head, read), f"<{title}>", "exec"), namespace)
        return namespace[name]  # type: ignore[no-any-return]


def field_code(code: Code, target: str, key: str, rule: Rule, kind: Kind) -> None:
    """Lines that set the local ``target`` from the local ``payload`` by ``rule`` (see the
    module docstring), or from the dict ``attributes`` for a ``$ce.<name>`` path.  A constant
    is checked here, once; a default too.  Nothing found (or null) gives the default, or a
    MappingError when the rule has none."""
    name = label(key, rule)
    if rule.constant is not None:
        code.add(f"{target} = {code.ref(kind.check(rule.constant, name), 'constant')}")
        return
    if rule.has_default:
        default = None if rule.default is None else kind.check(rule.default, f"{name} default")
        absent = code.ref(default, "default")
    else:
        absent = f"{code.ref(_missing(name), 'missing')}()"
    if rule.expr is not None:
        code.add(f"x = {code.ref(expr_getter(rule.expr, name), 'search')}(payload)")
    elif rule.attribute is not None:
        code.add(f"x = attributes.get({rule.attribute!r})")
    # the common case first: an accept or convert test is never true for None
    branches = []
    if kind.accept is not None:
        branches.append((kind.accept, "x"))
    branches.append(("x is None", absent))
    if kind.convert is not None:
        branches.append(kind.convert)
    checks = []
    for i, (test, value) in enumerate(branches):
        checks += [f"{'elif' if i else 'if'} {test}:", f"    {target} = {value}"]
    check = code.ref(kind.check, "check")
    checks += ["else:", f"    {target} = {check}(x, {code.ref(name, 'label')})"]
    if rule.path is not None and rule.attribute is None:
        steps = parse_path(str(rule.path))
        code.lines.append(PathRead(steps, target, kind.sure, tuple(checks)))
    else:
        code.add(*checks)


def _missing(name: str) -> Callable[[], Any]:
    def missing() -> Any:
        raise MappingError(name, "found nothing and the rule has no default")

    return missing
