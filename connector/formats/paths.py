"""Where a mapping rule reads a value: a dotted path, or a JMESPath expression.

Both are compiled once, when the mappings are built (``fields.compile_field``), into a
function of the decoded value; finding nothing is ``None``.

* ``{path: usage.requests}`` — dotted names with ``[n]`` list indexes (``items[0].id``,
  ``events[-1].ts``, ``[0].tenant`` on a top-level list).  A name is any run of characters
  other than ``.``, ``[``, ``]`` and white space.  This is the hot path: the getter is a few
  direct subscripts, no interpretation per record.  A name reached on something that is not
  an object, or an index on something that is not a list, finds nothing, as does an index
  beyond the list's end.
* ``{path: $ce.type}`` — a CloudEvents context attribute (format ``cloudevents`` only): the
  root ``$ce`` and one attribute name (``id``, ``source``, ``type``, ``subject``, ``time``, an
  extension such as ``tenantid``).  The other paths read the event's ``data``.
* ``{expr: "items[?kind=='api'] | length(@)"}`` — a JMESPath expression (jmespath.org), for
  anything richer: filters, projections, functions.  Slower (an interpreter runs per record);
  use it where a path cannot say it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jmespath
import jmespath.functions
from jmespath.exceptions import JMESPathError, ParseError

from connector.errors import MappingError

Getter = Callable[[Any], Any]
Step = str | int

_FIRST = re.compile(r"([^.\[\]\s]+)|\[(-?\d+)\]")
_NEXT = re.compile(r"\.([^.\[\]\s]+)|\[(-?\d+)\]")


def parse_path(text: str) -> tuple[Step, ...]:
    """The steps of a dotted path (names are ``str``, list indexes ``int``).

    Raises ``ValueError`` saying what is wrong, for the configuration error."""
    if not text:
        raise ValueError("is empty")
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        m = (_NEXT if steps else _FIRST).match(text, pos)
        if m is None:
            raise ValueError(
                f"is not a dotted path ({text!r}, at character {pos + 1}): names are joined "
                "with '.', list indexes are [n]; use {expr: ...} for anything richer"
            )
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(steps)


ATTRIBUTES = "$ce"
"""The root of a path that reads a CloudEvents context attribute instead of ``data``."""
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")


def attribute_name(text: str) -> str | None:
    """The context attribute a ``$ce.<name>`` path reads, or None for a path into the data.

    Raises ``ValueError`` for a ``$ce`` path that is not the root and one attribute name
    (CloudEvents names are lower-case ASCII letters and digits; ``data`` is not an
    attribute)."""
    steps = parse_path(text)
    if steps[0] != ATTRIBUTES:
        return None
    name = steps[1] if len(steps) == 2 else None
    if type(name) is not str or not _ATTRIBUTE_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r}: a CloudEvents attribute is read as $ce.<name>, one name of lower-case "
            "letters and digits (attributes are flat: $ce.type, $ce.subject, $ce.tenantid)"
        )
    if name == "data":
        raise ValueError("$ce.data: data is not a context attribute; a path without $ce reads it")
    return name


_FUNCTIONS = frozenset(jmespath.functions.Functions().FUNCTION_TABLE)


def _function_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            names.add(str(node.get("value")))
        for child in node.get("children", ()):
            names |= _function_names(child)
    return names


def expr_getter(text: str, field: str) -> Getter:
    """The getter of a JMESPath expression.  Raises ``ValueError`` when it does not compile;
    the getter raises ``MappingError`` naming ``field`` when the expression fails on a record
    (a function given the wrong type of argument)."""
    if not text.strip():
        raise ValueError("is empty")
    try:
        compiled = jmespath.compile(text)
    except ParseError as exc:
        hint = (
            "; expressions read the data, a CloudEvents attribute is read with {path: $ce.<name>}"
            if ATTRIBUTES in text
            else ""
        )
        raise ValueError(
            f"is not a valid JMESPath expression ({exc.msg.lower()} at character "
            f"{exc.lex_position + 1}: {text!r}){hint}"
        ) from None
    except JMESPathError as exc:
        raise ValueError(
            f"is not a valid JMESPath expression ({' '.join(str(exc).split())})"
        ) from None
    unknown = sorted(_function_names(compiled.parsed) - _FUNCTIONS)
    if unknown:
        raise ValueError(f"calls unknown JMESPath function(s) {', '.join(unknown)}")
    search = compiled.search

    def get(value: Any) -> Any:
        try:
            return search(value)
        except JMESPathError as exc:
            raise MappingError(field, f"expression {text!r} failed: {exc}") from None

    return get
