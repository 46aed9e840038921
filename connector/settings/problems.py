"""Settings problems as one line each, naming the environment variable that sets the key.

``format_validation_error`` turns pydantic's errors into ``CONNECTOR_…: what is wrong (got …)``
lines (a map entry or list item is named after the variable: ``CONNECTOR_KAFKA__CONSUMER:
'a': …``); ``env_json_problems`` names the variable whose JSON does not parse, which
pydantic-settings reports only by its section.
"""

from __future__ import annotations

import json
import os
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import NoDecode

ENV_PREFIX = "CONNECTOR_"


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the field at ``loc``; inside ``mappings`` (a YAML
    list) the key as written in the file, e.g. ``mappings[0].customer_id.path``."""
    if len(loc) > 1 and loc[0] == "mappings":
        text = "mappings"
        for part in loc[1:]:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text
    if len(loc) > 2 and loc[:2] == ("meters", "definitions"):  # the file's meters: [...] list
        return f"meters[{loc[2]}]" + "".join(f".{part}" for part in loc[3:])
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _describe(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    got = err.get("input")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {
            "greater_than_equal": f"must be ≥ {ctx.get('ge')}",
            "less_than_equal": f"must be ≤ {ctx.get('le')}",
            "greater_than": f"must be > {ctx.get('gt')}",
            "less_than": f"must be < {ctx.get('lt')}",
        }[kind]
        return f"{bound} (got {got})"
    if kind == "extra_forbidden":
        return "is not a known setting"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    text = msg[0].lower() + msg[1:] if msg else "invalid"
    if (
        isinstance(got, str | int | float)
        and "api_key" not in str(err.get("loc"))
        and repr(got) not in text
    ):
        text += f" (got {got!r})"
    return text


def _range_message(
    root: type[BaseModel], loc: tuple[int | str, ...], err: dict[str, Any]
) -> str | None:
    """'must be between A and B' when the field has both bounds."""
    info = _field_info(root, loc)
    if info is None:
        return None
    lo = hi = None
    for meta in info.metadata:
        lo = getattr(meta, "ge", lo) if getattr(meta, "ge", None) is not None else lo
        hi = getattr(meta, "le", hi) if getattr(meta, "le", None) is not None else hi
    if lo is None or hi is None:
        return None
    return f"must be between {lo} and {hi} (got {err.get('input')})"


def _field_info(root: type[BaseModel], loc: tuple[int | str, ...]) -> Any:
    model: Any = root
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _setting_loc(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``loc`` without the union-member tags pydantic appends after a map entry or list item
    of plain values (``('kafka', 'consumer', 'a', 'str')`` → ``('kafka', 'consumer', 'a')``);
    lists and maps of sections (``mappings``) are walked into."""
    model: Any = root
    for i, part in enumerate(loc):
        fields = getattr(model, "model_fields", None)
        if fields is not None:
            if part not in fields:  # an unknown setting
                return loc
            model = fields[part].annotation
            continue
        args = typing.get_args(model)
        item = args[-1] if typing.get_origin(model) in (list, dict) and args else None
        if getattr(item, "model_fields", None) is None:  # a plain entry: the tags follow it
            return loc[: i + 1]
        model = item
    return loc


def format_validation_error(root: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per problem: ``CONNECTOR_…: what is wrong (got …)``."""
    lines: dict[str, str] = {}
    kinds: dict[str, list[str]] = {}  # the union members a value fitted none of
    for err in exc.errors(include_url=False):
        loc = _setting_loc(root, tuple(err["loc"]))
        name = env_name(loc)
        if len(loc) < len(err["loc"]):
            kinds.setdefault(name, []).append(str(err["loc"][len(loc)]))
        if name in lines and len(kinds.get(name, ())) > 1:
            got = err.get("input")
            *others, last = kinds[name]
            lines[name] = f"{name}: must be {', '.join(others)} or {last}" + (
                f" (got {json.dumps(got)})" if _jsonable(got) else ""
            )
            continue
        if err["type"] == "missing":
            message = "is required"
        elif err["type"] in ("greater_than_equal", "less_than_equal"):
            message = _range_message(root, loc, dict(err)) or _describe(dict(err))
        else:
            message = _describe(dict(err))
        lines[name] = f"{name}: {message}"
    return list(lines.values())


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def env_json_problems(root: type[BaseModel]) -> list[str]:
    """Environment variables holding a map or list (other than the comma-separated topics)
    whose JSON does not parse: named here, because pydantic-settings names only the section."""
    problems = []
    for key, value in os.environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        info = _field_info(root, tuple(key[len(ENV_PREFIX) :].lower().split("__")))
        if info is None or any(type(m) is NoDecode or m is NoDecode for m in info.metadata):
            continue
        origin = getattr(info.annotation, "__origin__", info.annotation)
        if origin not in (dict, list):
            continue
        try:
            json.loads(value)
        except ValueError as exc:
            kind = "map (JSON object)" if origin is dict else "list (JSON array)"
            problems.append(f"{key.upper()}: not a valid JSON {kind}: {exc}")
    return problems
