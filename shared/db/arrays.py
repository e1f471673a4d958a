"""Array parameters of the batch statements, encoded in PostgreSQL's binary format.

Every batch statement passes its rows as one array per column (``unnest``).
psycopg encodes a Python list element by element in pure Python, even in its
binary build: about a third of the drain thread's time, on the critical path
beside PostgreSQL (docs/benchmarks.md). These encoders build the same bytes in
one list comprehension per column. Only the types the batches use: text,
timestamptz (aware datetimes only), jsonb (orjson, as the pool's Jsonb),
bigint, int, smallint, double precision, uuid and boolean. Pass them with ``%b``
placeholders.

The wire format (PostgreSQL's array_send): number of dimensions, a has-nulls
flag, the element type's oid, then per dimension its length and lower bound,
then each element as its length (-1 for NULL) and its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg import adapters
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

_HEAD = struct.Struct(">iiiii").pack  # one dimension
_EMPTY = struct.Struct(">iii").pack  # zero dimensions
_LEN = struct.Struct(">i").pack
_NULL = _LEN(-1)
_INT8 = struct.Struct(">iq").pack
_INT4 = struct.Struct(">ii").pack
_INT2 = struct.Struct(">ih").pack
_FLOAT8 = struct.Struct(">id").pack
_UUID_LEN = _LEN(16)
_BOOL = {True: _LEN(1) + b"\x01", False: _LEN(1) + b"\x00"}
_JSONB_VERSION = b"\x01"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Array:
    """An array parameter, already encoded; the subclass says its type."""

    __slots__ = ("data",)
    element_oid = 0  # set per subclass; the array's own oid is its dumper's

    def __init__(self, data: bytes) -> None:
        self.data = data


def _array_type(name: str, array_oid: int, element_oid: int) -> type[Array]:
    cls = type(name, (Array,), {"__slots__": (), "element_oid": element_oid})

    class _Dumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: Array) -> Buffer:
            return obj.data

    adapters.register_dumper(cls, _Dumper)
    return cls


TextArray = _array_type("TextArray", 1009, 25)
TimestamptzArray = _array_type("TimestamptzArray", 1185, 1184)
JsonbArray = _array_type("JsonbArray", 3807, 3802)
BigintArray = _array_type("BigintArray", 1016, 20)
IntArray = _array_type("IntArray", 1007, 23)
SmallintArray = _array_type("SmallintArray", 1005, 21)
BooleanArray = _array_type("BooleanArray", 1000, 16)
Float8Array = _array_type("Float8Array", 1022, 701)
UuidArray = _array_type("UuidArray", 2951, 2950)


def _encode(cls: type[Array], values: Sequence[Any], parts: list[bytes]) -> Array:
    oid = cls.element_oid
    if not parts:
        return cls(_EMPTY(0, 0, oid))
    return cls(_HEAD(1, None in values, oid, len(parts), 1) + b"".join(parts))


def text(values: Sequence[str | None]) -> Array:
    return _encode(TextArray, values, [
        _NULL if v is None else _LEN(len(b := v.encode())) + b for v in values])


def _micros(v: datetime) -> int:
    # An aware datetime only: a naive one raises TypeError here rather than
    # being stored as if it were UTC.
    d = v - _PG_EPOCH
    return d.microseconds + 1_000_000 * (86_400 * d.days + d.seconds)


def timestamptz(values: Sequence[datetime | None]) -> Array:
    return _encode(TimestamptzArray, values, [
        _NULL if v is None else _INT8(8, _micros(v)) for v in values])


def jsonb(values: Sequence[Any]) -> Array:
    """Python values as jsonb; None is SQL NULL (not JSON null)."""
    return _encode(JsonbArray, values, [
        _NULL if v is None else _LEN(len(b := orjson.dumps(v)) + 1) + _JSONB_VERSION + b
        for v in values])


def _fixed(cls: type[Array], pack: Callable[..., bytes], size: int) -> Callable[..., Array]:
    def encode(values: Sequence[float | None]) -> Array:
        return _encode(cls, values, [_NULL if v is None else pack(size, v) for v in values])
    return encode


bigint = _fixed(BigintArray, _INT8, 8)
integer = _fixed(IntArray, _INT4, 4)
smallint = _fixed(SmallintArray, _INT2, 2)
float8 = _fixed(Float8Array, _FLOAT8, 8)


def uuid(values: Sequence[UUID | None]) -> Array:
    return _encode(UuidArray, values, [_NULL if v is None else _UUID_LEN + v.bytes
                                       for v in values])


def boolean(values: Sequence[bool | None]) -> Array:
    return _encode(BooleanArray, values, [_NULL if v is None else _BOOL[bool(v)]
                                          for v in values])
