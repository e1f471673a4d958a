"""What a provider format module provides, and the helpers they share.

A format module defines ``FORMATS``: a list of :class:`Format`. The registry
(``shared.providers``) discovers modules by itself, so adding a provider format
touches one module and its fixtures, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.error_store import ErrorStore
from marshmallow.validate import And, Validator

from shared.model import NormalisedEvent
from shared.timeutil import parse_timestamp


class ParseError(Exception):
    """The callback cannot be applied; ``reason`` is what the dead letter says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedEvent(ParseError):
    """Valid JSON that no format understands: kept as a dead letter for replay."""


Matcher = Callable[[Any, str | None], bool]
Parser = Callable[[Any, str | None], list[NormalisedEvent]]


@dataclass(frozen=True, slots=True)
class Format:
    source: str      # URL source, e.g. "kaleyra-rcs"
    name: str        # format name, for logs and dead-letter reasons
    matches: Matcher  # cheap shape test on the decoded JSON and the URL event
    parse: Parser    # may raise ParseError
    # Tried after the source's other formats: it claims any body the others do not.
    fallback: bool = False
    # What a body needs to be read by this format, for an unsupported body's dead letter.
    needs: str = ""


class UTCDateTime(fields.Field):
    """A timestamp in any dialect the providers use, loaded as an aware UTC datetime."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> datetime | None:
        if isinstance(value, str) and not value.strip() and not self.required:
            return None  # Kaleyra.io sends "" for a time it does not know yet
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class LooseString(fields.String):
    """A string that also accepts numbers: providers send ids and numbers either way."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if type(value) is str:
            return value  # what String._deserialize returns for one, two calls sooner
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                value = str(value)
            except ValueError as exc:  # str() refuses integers beyond 4300 digits
                raise ValidationError("Not a valid string.") from exc
        return super()._deserialize(value, attr, data, **kwargs)


def _no_validators(value: Any) -> None:
    return None


def prebuild_validation(f: fields.Field) -> None:
    """marshmallow runs every loaded value through an And() of the field's
    validators, built afresh on each call even when there are none: about a tenth
    of parsing (docs/benchmarks.md). Built once instead: nothing for a field
    without validators, the validator itself for one of marshmallow's own (its
    error is And's: the same string messages, no keywords). What is checked, and
    every error, stays the same."""
    validators = f.validators
    if not validators:
        f._validate = _no_validators  # type: ignore[method-assign]
    elif len(validators) == 1 and isinstance(validators[0], Validator):
        f._validate = validators[0]  # type: ignore[method-assign]
    else:
        f._validate = And(*validators)  # type: ignore[method-assign]


def optional_text(value: Any) -> str | None:
    """A non-empty id or number as a string; anything else (objects, huge ints) is None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return str(value)
    return None


# A failure reason is the provider's prose, a code its identifier: bounded, since a
# callback may be 256 KiB and both are stored on the message and in its history.
REASON_CHARS = 1000
CODE_CHARS = 100


def failure(reason: Any, code: Any) -> tuple[str | None, str | None]:
    """(failure_reason, failure_code) of a failing receipt (FAILURE_STATUSES) from the
    provider's reason and code: text, bounded. A format module asks only on a failing
    status and passes (None, None) otherwise: most receipts are not failing, and a
    call, closure or ``**`` for each of them showed in the drain's instruction count
    (docs/benchmarks.md, History, 2 Dec)."""
    reason, code = optional_text(reason), optional_text(code)
    return (reason[:REASON_CHARS] if reason else None, code[:CODE_CHARS] if code else None)


def error_parts(error: Any) -> tuple[str | None, str | None]:
    """(reason, code) of an error a Kaleyra receipt carries: a string is the reason;
    an object gives its message (else title, description, details) and its code."""
    if isinstance(error, str):
        return error or None, None
    if not isinstance(error, Mapping):
        return None, None
    texts = (optional_text(error.get(k)) for k in ("message", "title", "description", "details"))
    return next((t for t in texts if t), None), optional_text(error.get("code"))


Plan = tuple[tuple[str, str, fields.Field, bool, Any], ...]
# A plan entry's "absent" when a missing key must go through _load_field.
_LOAD = object()
_LOAD_HOOKS = (PRE_LOAD, POST_LOAD, VALIDATES, VALIDATES_SCHEMA)


def _plain(f: fields.Field) -> bool:
    """A field whose deserialize() is no more than: required / null checks, the
    load default, _deserialize, _validate. The field loop does those itself."""
    return not (f.pre_load or f.post_load)


def _absent(f: fields.Field, plain: bool) -> Any:
    """What _load_field gives a plain, optional field whose key is missing (its load
    default, when that is no callable), else _LOAD: most fields of a callback are
    absent, and the field loop then takes this without a call."""
    if not plain or f.required or callable(f.load_default):
        return _LOAD
    return f.load_default


def load_plan(schema: Schema) -> Plan | None:
    """(result key, input key, field, plain, absent) for each loaded field, in
    declaration order; None when a result key is dotted (marshmallow nests those: its
    own loop does)."""
    plan = tuple(
        (f.attribute or name, f.data_key if f.data_key is not None else name, f, plain,
         _absent(f, plain))
        for name, f in schema.load_fields.items() for plain in (_plain(f),)
    )
    return None if any("." in key for key, *_ in plan) else plan


class BaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for f in self.load_fields.values():
            prebuild_validation(f)
        self._plan: Plan | None = load_plan(self)
        self._has_load_hooks = any(self._hooks[tag] for tag in _LOAD_HOOKS)

    def load(  # type: ignore[override]
        self, data: Any, *, many: bool | None = None, partial: Any = None,
        unknown: Any = None,
    ) -> Any:
        """Schema.load for the one case providers use, without what _do_load does
        for hooks, collections and partial loads that this case never has: the
        same field loop, the same error (ValidationError with data and valid_data,
        through handle_error). Anything else is marshmallow's own."""
        if self._plan is None or self._has_load_hooks or many or self.many \
                or partial is not None or self.partial is not None:
            return super().load(data, many=many, partial=partial, unknown=unknown)
        error_store = ErrorStore()
        result = self._deserialize(data, error_store=error_store,
                                   unknown=self.unknown if unknown is None else unknown)
        if error_store.errors:
            exc = ValidationError(error_store.errors, data=data, valid_data=result)
            self.handle_error(exc, data, many=False, partial=None)
            raise exc
        return result

    def _deserialize(  # type: ignore[override]
        self, data: Any, *, error_store: ErrorStore, many: bool = False,
        partial: Any = None, unknown: Any = None, index: int | None = None,
    ) -> Any:
        """marshmallow's field loop for the one case providers use (one object,
        unknown keys excluded, nothing partial), without what that case never
        needs: a closure, a keyword dict and three calls per field, a third of
        parsing (docs/benchmarks.md). Same fields, same calls into each field,
        same error store entries; any other case is marshmallow's own."""
        plan = self._plan
        if plan is None or many or partial is not None or unknown != EXCLUDE \
                or not isinstance(data, Mapping):
            return super()._deserialize(data, error_store=error_store, many=many,
                                        partial=partial, unknown=unknown, index=index)
        index = index if self.opts.index_errors else None
        out = self.dict_class()
        for key, name, f, plain, absent in plan:
            value = data.get(name, missing)
            if value is missing and absent is not _LOAD:
                if absent is not missing:
                    out[key] = absent
                continue
            try:
                value = _load_field(f, plain, value, name, data)
            except ValidationError as error:
                error_store.store_error(error.messages, name, index=index)
                value = error.valid_data or missing
            if value is not missing:
                out[key] = value
        return out


def instances(*classes: type[BaseSchema]) -> tuple[BaseSchema, ...]:
    """One instance of each schema, made once at import: a schema keeps no state between
    loads, and ``shared.providers.schemas()`` finds these module-level instances."""
    return tuple(cls() for cls in classes)


def _load_field(f: fields.Field, plain: bool, value: Any, name: str, data: Any) -> Any:
    """Field.deserialize(value, name, data). For a plain field, its steps inline:
    most fields of a callback are absent or null, and this skips three calls each."""
    if not plain:
        return f.deserialize(value, name, data)
    if value is missing:
        if f.required:
            raise f.make_error("required")
        default = f.load_default
        return default() if callable(default) else default
    if value is None:
        if not f.allow_none:
            raise f.make_error("null")
        return None
    output = f._deserialize(value, name, data)
    f._validate(output)
    return output


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            out += _flatten(value, f"{prefix}{key}." if key != "_schema" else prefix)
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix.rstrip('.') or 'body'}: {' '.join(messages)}"]
    if isinstance(messages, list):
        return [line for m in messages for line in _flatten(m, prefix)]
    return [f"{prefix.rstrip('.') or 'body'}: {messages}"]


def load(schema: Schema, doc: Any, what: str) -> dict[str, Any]:
    """Load ``doc`` with ``schema``; a validation error becomes a readable ParseError."""
    if not isinstance(doc, Mapping):
        raise ParseError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    try:
        return schema.load(doc)
    except ValidationError as exc:
        detail = "; ".join(sorted(_flatten(exc.messages)))
        raise ParseError(f"{what}: {detail}") from exc
