"""Avro bodies decoded by Python code written for each writer schema, once.

fastavro's ``schemaless_reader`` walks the schema for every value it reads (a dispatch and a
few dict look-ups per field), the larger part of decode + map for an Avro usage record.
``compile_reader`` turns a parsed writer schema into the source of one
function that reads its fields in order with the common case inline (one-byte varints, short
strings) and builds the same values: 1.9× faster than fastavro on the bench record
(BENCHMARKS.md).  A property test holds it to fastavro on random schemas and data.

The values are fastavro's: records and maps are dicts, arrays lists, ``bytes`` and ``fixed``
bytes, ``string`` text, an ``enum`` its symbol, a union its value; ``boolean`` is any non-zero
byte.  Where fastavro accepts what is not Avro, the code refuses: a negative enum index, a
varint longer than 10 bytes or beyond 64 bits, an array or map count larger than the bytes
left could hold (fastavro would loop on a corrupt count of zero-size items).

``compile_reader`` returns None for a schema with a logical type left in it (fastavro's
readers turn those into Python objects), or nested deeper than Python compiles (about ten
arrays or maps in one another: "too many statically nested blocks"): such schemas stay with
fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
"""``reader(data, start)`` → (value, position after it).  Raises ``AvroError`` (or the
``IndexError`` / ``struct.error`` / ``UnicodeDecodeError`` of reading past the end or bad
text) on bad bytes; a position past ``len(data)`` means the value was cut short (the last
string or bytes value read short: checked once, by the caller, not per field)."""

PRIMITIVE = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_MAX_ZERO_SIZE_ITEMS = 1 << 20


class AvroError(ValueError):
    """The bytes are not a value of the schema."""


class Unsupported(Exception):
    """A schema this module leaves to fastavro."""


_SHIFTS = (7, 14, 21, 28, 35, 42, 49, 56, 63)


def _long(data: bytes, p: int, b: int) -> tuple[int, int]:
    """The rest of a zig-zag varint whose first byte ``b`` (with its high bit) is read."""
    n = b & 0x7F
    for shift in _SHIFTS:
        b = data[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise AvroError("a varint is beyond 64 bits")
            return (n >> 1) ^ -(n & 1), p
    raise AvroError("a varint is longer than 10 bytes")


def _rest(data: bytes, p: int, n: int) -> tuple[int, int]:
    """Bytes 7 to 10 of a varint whose first six, read into ``n`` (zig-zag not undone), all
    had the high bit: as ``_long`` reads them, ``n`` not undone either."""
    for shift in _SHIFTS[5:]:
        b = data[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise AvroError("a varint is beyond 64 bits")
            return n, p
    raise AvroError("a varint is longer than 10 bytes")


def _size(data: bytes, p: int) -> tuple[int, int]:
    """A length (varint at ``p``) that is not a one-byte even value: multi-byte, or negative."""
    b = data[p]
    if b < 0x80:
        n, p = _ZIGZAG[b], p + 1
    else:
        n, p = _long(data, p + 1, b)
    if n < 0:
        raise AvroError(f"negative length {n}")
    return n, p


_ZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(128))


def compile_reader(schema: Any, named: dict[str, Any]) -> Reader | None:
    """The reader of ``schema`` (fastavro-parsed; ``named``: its named types by full name),
    or None when it has a logical type."""
    try:
        return _Gen(named).build(schema)
    except (Unsupported, SyntaxError, RecursionError):  # also nested beyond what Python compiles
        return None


class _Gen:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.n = 0
        self.consts: dict[str, Any] = {}
        self.expanding: list[str] = []
        self.functions: dict[str, str] = {}  # recursive named type → its function's name
        self.pending: list[str] = []
        self.prefix = "v"  # of the locals holding values

    def build(self, schema: Any) -> Reader:
        body: list[str] = []
        self.lines = body
        out = self.value(schema, 1)
        body.append(f"    return {out}, p")
        source = ["def _read(data, p):", "    end = len(data)", *body, *self.recursive_source()]
        namespace = self.namespace()
        exec(compile("\n".join(source), "<avro reader>", "exec"), namespace)
        reader: Reader = namespace["_read"]
        return reader

    def recursive_source(self) -> list[str]:
        """The source of the functions that read the recursive named types met so far."""
        source: list[str] = []
        while self.pending:  # recursive named types: one function each
            name = self.pending.pop()
            fn_lines: list[str] = []
            self.lines = fn_lines
            self.expanding = [name]
            out = self.value(self.named[name], 1)
            source += [
                f"def {self.functions[name]}(data, p):",
                "    end = len(data)",
                *fn_lines,
                f"    return {out}, p",
            ]
        return source

    def namespace(self) -> dict[str, Any]:
        """What the generated code refers to: the helpers and the constants."""
        return {
            "_long": _long,
            "_rest": _rest,
            "_size": _size,
            "_zz": _ZIGZAG,
            "_bad": AvroError,
            "_f4": struct.Struct("<f").unpack_from,
            "_f8": struct.Struct("<d").unpack_from,
            **self.consts,
        }

    # -- code ---------------------------------------------------------------------------
    def var(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def const(self, value: Any) -> str:
        name = f"c{len(self.consts)}"
        self.consts[name] = value
        return name

    def varint(self, ind: int) -> str:
        """Read a zig-zag varint (the one-byte case inline)."""
        v = self.var()
        self.emit(ind, "b = data[p]")
        self.emit(ind, "p += 1")
        self.emit(ind, "if b < 0x80:")
        self.emit(ind + 1, f"{v} = _zz[b]")
        self.emit(ind, "elif data[p] < 0x80:")  # two bytes (IndexError past the end)
        self.emit(ind + 1, "b = (b & 0x7F) | (data[p] << 7)")
        self.emit(ind + 1, f"{v} = (b >> 1) ^ -(b & 1)")
        self.emit(ind + 1, "p += 1")
        self.emit(ind, "else:")  # three to six bytes inline (a time in ms takes six)
        self.emit(ind + 1, f"{v} = (b & 0x7F) | (data[p] & 0x7F) << 7")
        self.emit(ind + 1, "b = data[p + 1]")
        self.emit(ind + 1, "p += 2")
        self.emit(ind + 1, f"{v} |= (b & 0x7F) << 14")
        for k, shift in enumerate((21, 28, 35)):
            self.emit(ind + 1 + k, "if b > 0x7F:")
            self.emit(ind + 2 + k, "b = data[p]")
            self.emit(ind + 2 + k, "p += 1")
            self.emit(ind + 2 + k, f"{v} |= (b & 0x7F) << {shift}")
        self.emit(ind + 4, "if b > 0x7F:")
        self.emit(ind + 5, f"{v}, p = _rest(data, p, {v})")
        self.emit(ind + 1, f"{v} = ({v} >> 1) ^ -({v} & 1)")
        return v

    def sized(self, ind: int, size: str, decode: bool) -> str:
        """Read ``size`` bytes (an expression) as bytes, or as text with ``decode``.  A slice
        past the end reads short and leaves ``p`` past ``end``: the caller's one check."""
        v = self.var()
        self.emit(ind, f"e = p + {size}")
        self.emit(ind, f"{v} = data[p:e].decode()" if decode else f"{v} = data[p:e]")
        self.emit(ind, "p = e")
        return v

    def length(self, ind: int) -> str:
        """Read the length of a string or bytes value (a one-byte even varint inline)."""
        n = self.var()
        self.emit(ind, "b = data[p]")
        self.emit(ind, "if b & 0x81:")
        self.emit(ind + 1, f"{n}, p = _size(data, p)")
        self.emit(ind, "else:")
        self.emit(ind + 1, f"{n} = b >> 1")
        self.emit(ind + 1, "p += 1")
        return n

    def value(self, schema: Any, ind: int) -> str:
        """Emit the code that reads one value of ``schema``; the name holding it."""
        if isinstance(schema, list):
            return self.union(schema, ind)
        if isinstance(schema, str):
            if schema in PRIMITIVE:
                return self.primitive(schema, ind)
            return self.reference(schema, ind)
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        if "logicalType" in schema:
            raise Unsupported(schema["logicalType"])
        kind = schema.get("type")
        if kind in PRIMITIVE:
            return self.primitive(kind, ind)
        if kind in ("record", "error"):
            return self.named_type(schema, ind, self.record)
        if kind == "enum":
            return self.named_type(schema, ind, self.enum)
        if kind == "fixed":
            return self.named_type(schema, ind, self.fixed)
        if kind == "array":
            return self.blocks(schema["items"], None, ind)
        if kind == "map":
            return self.blocks(schema["values"], "string", ind)
        if isinstance(kind, (str, list, dict)):
            return self.value(kind, ind)
        raise Unsupported(f"type {kind!r}")

    def primitive(self, kind: str, ind: int) -> str:
        if kind == "null":
            return "None"
        if kind in ("int", "long"):
            return self.varint(ind)
        if kind == "boolean":
            v = self.var()
            self.emit(ind, f"{v} = data[p] != 0")
            self.emit(ind, "p += 1")
            return v
        if kind in ("float", "double"):
            v = self.var()
            size = 4 if kind == "float" else 8
            self.emit(ind, f"{v} = _f{size}(data, p)[0]")
            self.emit(ind, f"p += {size}")
            return v
        return self.sized(ind, self.length(ind), decode=kind == "string")

    def reference(self, name: str, ind: int) -> str:
        schema = self.named.get(name)
        if schema is None:
            raise Unsupported(f"unknown type {name!r}")
        if name in self.expanding:  # recursive: through a function of its own
            fn = self.functions.get(name)
            if fn is None:
                fn = self.functions[name] = f"_t{len(self.functions)}"
                self.pending.append(name)
            v = self.var()
            self.emit(ind, f"{v}, p = {fn}(data, p)")
            return v
        return self.value(schema, ind)

    def named_type(self, schema: dict[str, Any], ind: int, read: Callable[..., str]) -> str:
        name = schema.get("name", "")
        self.expanding.append(name)
        try:
            return read(schema, ind)
        finally:
            self.expanding.pop()

    def record(self, schema: dict[str, Any], ind: int) -> str:
        parts = []
        for field in schema.get("fields", []):
            value = self.value(field["type"], ind)
            parts.append(f"{field['name']!r}: {value}")
        v = self.var()
        self.emit(ind, f"{v} = {{{', '.join(parts)}}}")
        return v

    def enum(self, schema: dict[str, Any], ind: int) -> str:
        symbols = self.const(tuple(schema["symbols"]))
        i = self.varint(ind)
        self.emit(ind, f"if not 0 <= {i} < {len(schema['symbols'])}:")
        self.emit(ind + 1, f"raise _bad(f'enum index {{{i}}} out of range')")
        v = self.var()
        self.emit(ind, f"{v} = {symbols}[{i}]")
        return v

    def fixed(self, schema: dict[str, Any], ind: int) -> str:
        return self.sized(ind, str(int(schema["size"])), decode=False)

    def union(self, branches: list[Any], ind: int) -> str:
        i = self.varint(ind)
        v = self.var()
        for k, branch in enumerate(branches):
            self.emit(ind, f"{'if' if k == 0 else 'elif'} {i} == {k}:")
            self.emit(ind + 1, f"{v} = {self.value(branch, ind + 1)}")
        self.emit(ind, "else:")
        self.emit(ind + 1, f"raise _bad(f'union index {{{i}}} out of range')")
        return v

    def blocks(self, item: Any, key: str | None, ind: int) -> str:
        """An array (``key`` None) or a map: blocks of a count, then that many items."""
        v = self.var()
        size = _min_size(item, self.named, set()) + (1 if key else 0)
        self.emit(ind, f"{v} = {{}}" if key else f"{v} = []")
        self.emit(ind, "while True:")
        count = self.varint(ind + 1)
        self.emit(ind + 1, f"if {count} == 0:")
        self.emit(ind + 2, "break")
        self.emit(ind + 1, f"if {count} < 0:")
        self.emit(ind + 2, f"{count} = -{count}")
        self.varint(ind + 2)  # the block's size in bytes: not needed
        limit = f"{count} * {size} > end - p" if size else f"{count} > {_MAX_ZERO_SIZE_ITEMS}"
        self.emit(ind + 1, f"if {limit}:")
        self.emit(ind + 2, f"raise _bad(f'a block of {{{count}}} items cannot fit the value')")
        self.emit(ind + 1, f"for _ in range({count}):")
        if key:
            name = self.primitive("string", ind + 2)
            self.emit(ind + 2, f"{v}[{name}] = {self.value(item, ind + 2)}")
        else:
            self.emit(ind + 2, f"{v}.append({self.value(item, ind + 2)})")
        return v


def _min_size(schema: Any, named: dict[str, Any], seen: set[str]) -> int:
    """The fewest bytes a value of ``schema`` takes (for the block-count check)."""
    if isinstance(schema, list):
        return 1
    if isinstance(schema, str):
        if schema == "null":
            return 0
        if schema in PRIMITIVE:
            return {"float": 4, "double": 8}.get(schema, 1)
        if schema in seen:
            return 0
        return _min_size(named.get(schema, "null"), named, seen | {schema})
    kind = schema.get("type")
    if kind in ("record", "error"):
        inner = seen | {schema.get("name", "")}
        return sum(_min_size(f["type"], named, inner) for f in schema.get("fields", []))
    if kind == "fixed":
        return int(schema["size"])
    if kind in ("enum", "array", "map"):
        return 1
    return _min_size(kind, named, seen)
