"""The cattrs converter between decoded P3 JSON and the model in `model.py`.

Wire keys are the attribute names in camelCase (`merchant_secret` <->
`merchantSecret`), except the [gap] keys, which the dialect names. Every hook is
registered in `P3Converter._register_hooks`. Each model class gets one structure
and one unstructure function, built once around a `_Layout` (its precomputed wire
keys and field hooks), so converting a message does no reflection.

Structuring is strict about JSON types and never coerces: "5" is not an integer and
`true` is not a number. Any JSON number fills a `Decimal` field (an integer `10`
becomes `Decimal(10)`, which writes back as `10`). A value of the wrong type raises
`FieldTypeError`, which names its path, e.g.
`executeTransactionRequest.transactionParameters.amount: expected number, got string`.

Nothing is dropped: unknown keys go to `extra`, explicit nulls to `null_keys`, the
body of an unknown message type to `UnknownBody`; unstructuring writes them all back.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, cast, get_args, get_origin

import attrs
import cattrs

from p3log.protocol.dialect import DEFAULT_DIALECT, Dialect
from p3log.protocol.jsontext import json_kind
from p3log.protocol.model import (
    AbortTransactionRequest,
    AbortTransactionResponse,
    AmendTransactionRequest,
    AmendTransactionResponse,
    AmendTransactionUpdate,
    Body,
    ExecuteTransactionAction,
    ExecuteTransactionRequest,
    ExecuteTransactionResponse,
    ExecuteTransactionUpdate,
    LoginMerchantRequest,
    LoginMerchantResponse,
    Message,
    MessageType,
    P3Error,
    SubmitSignatureRequest,
    SubmitSignatureResponse,
    UnknownBody,
    WireObject,
    body_key,
    camel_case,
)

__all__ = ["FieldTypeError", "P3Converter", "converter_for", "format_path"]

T = TypeVar("T")
StructureHook = Callable[[Any, Any], Any]
UnstructureHook = Callable[[Any], Any]
PathStep = str | int

# The body class of every message type whose name the dialect cannot change.
_FIXED_BODIES: Mapping[str, type[WireObject]] = {
    MessageType.LOGIN_MERCHANT_REQUEST: LoginMerchantRequest,
    MessageType.LOGIN_MERCHANT_RESPONSE: LoginMerchantResponse,
    MessageType.EXECUTE_TRANSACTION_REQUEST: ExecuteTransactionRequest,
    MessageType.EXECUTE_TRANSACTION_UPDATE: ExecuteTransactionUpdate,
    MessageType.EXECUTE_TRANSACTION_ACTION: ExecuteTransactionAction,
    MessageType.EXECUTE_TRANSACTION_RESPONSE: ExecuteTransactionResponse,
    MessageType.SUBMIT_SIGNATURE_REQUEST: SubmitSignatureRequest,
    MessageType.SUBMIT_SIGNATURE_RESPONSE: SubmitSignatureResponse,
    MessageType.AMEND_TRANSACTION_REQUEST: AmendTransactionRequest,
    MessageType.AMEND_TRANSACTION_UPDATE: AmendTransactionUpdate,
    MessageType.AMEND_TRANSACTION_RESPONSE: AmendTransactionResponse,
}

# Attributes that are bookkeeping, not wire fields; `body` is keyed by the type.
_NOT_FIELDS = frozenset({"extra", "null_keys"})
_ENVELOPE_SPECIAL = frozenset({"body", "lenient"})

_MISSING: Any = object()
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FieldTypeError(ValueError):
    """A wire value of the wrong JSON type, and the path to it in the message."""

    def __init__(self, expected: str, got: str, path: tuple[PathStep, ...] = ()) -> None:
        super().__init__(expected, got, path)
        self.expected = expected
        self.got = got
        self.path = path

    def nest(self, step: PathStep) -> None:
        """Record the key or index the value sits under (called on the way out)."""
        self.path = (step, *self.path)

    def __str__(self) -> str:
        return f"{format_path(self.path)}: expected {self.expected}, got {self.got}"


def format_path(path: tuple[PathStep, ...]) -> str:
    """`("devices", 0, "name")` -> `devices[0].name`; odd keys are quoted JSON."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(step)}]"
    return text or "(top level)"


@attrs.frozen
class _Field:
    attr: str
    key: str
    type: Any
    structure: StructureHook
    unstructure: UnstructureHook


@attrs.frozen
class _Layout:
    """Where the fields of one model class sit in its JSON object."""

    fields: tuple[_Field, ...]
    by_key: dict[str, _Field]

    def read(self, obj: dict[str, Any], consumed: str | None = None) -> dict[str, Any]:
        """Constructor arguments for a wire object; `consumed` is a key read elsewhere."""
        args: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        nulls: list[str] = []
        for key, raw in obj.items():
            field = self.by_key.get(key)
            if field is None:
                if key != consumed:
                    extra[key] = raw
            elif raw is None:
                nulls.append(field.attr)
            else:
                try:
                    args[field.attr] = field.structure(raw, field.type)
                except FieldTypeError as exc:
                    exc.nest(key)
                    raise
        if extra:
            args["extra"] = extra
        if nulls:
            args["null_keys"] = frozenset(nulls)
        return args

    def write(self, value: WireObject, out: dict[str, Any]) -> None:
        """Add the wire keys of `value`'s fields to `out` (not its extra keys)."""
        nulls = value.null_keys
        for field in self.fields:
            item = getattr(value, field.attr)
            if item is not None:
                out[field.key] = field.unstructure(item)
            elif field.attr in nulls:
                out[field.key] = None


def _write_extra(value: WireObject, out: dict[str, Any]) -> None:
    # A known field always wins over an extra key of the same name.
    for key, item in value.extra.items():
        out.setdefault(key, item)


class P3Converter:
    """Converts between decoded P3 JSON (dicts) and model objects, for one dialect.

    Building one takes milliseconds and using one microseconds, so share them:
    `converter_for` keeps one per dialect.
    """

    def __init__(self, dialect: Dialect = DEFAULT_DIALECT) -> None:
        self.dialect = dialect
        self._keys = _dialect_keys(dialect)
        self._bodies = _body_classes(dialect)
        self._layouts: dict[type[WireObject], _Layout] = {}
        self._cattrs = cattrs.Converter()
        self._register_hooks()
        self._envelope = self._layout(Message)
        # Build every hook now, so that a dialect that cannot work fails here.
        for body_cls in self._bodies.values():
            self._cattrs.get_structure_hook(body_cls)
            self._cattrs.get_unstructure_hook(body_cls)

    def structure(self, obj: Any, cls: type[T]) -> T:
        """A model object of class `cls` from decoded JSON; raises `FieldTypeError`."""
        return self._cattrs.structure(obj, cls)

    def unstructure(self, value: Any) -> Any:
        """Decoded JSON (dicts, lists, `Decimal`...) for a model object."""
        return self._cattrs.unstructure(value)

    def body_class(self, msg_type: str) -> type[WireObject] | None:
        """The body class of a message type, or None for a type this dialect does not know."""
        return self._bodies.get(msg_type)

    def structure_message(self, obj: Any) -> Message:
        """A `Message` from a decoded JSON object; raises `FieldTypeError`."""
        if not isinstance(obj, dict):
            raise FieldTypeError("object", json_kind(obj))
        msg_type = obj.get("type", _MISSING)
        if not isinstance(msg_type, str):
            got = "nothing" if msg_type is _MISSING else json_kind(msg_type)
            raise FieldTypeError("string", got, ("type",))
        key = body_key(msg_type)
        body, body_key_read = self._read_body(msg_type, key, obj)
        args = self._envelope.read(obj, consumed=key if body_key_read else None)
        if body_key_read and body is None:
            args["null_keys"] = args.get("null_keys", frozenset()) | {"body"}
        return Message(body=body, **args)

    def _read_body(self, msg_type: str, key: str, obj: dict[str, Any]) -> tuple[Body | None, bool]:
        """The body under `key`, and whether `key` was read as the body (else it is extra)."""
        # A type whose body key is an envelope key (say, "TAG") cannot have a body.
        if key in self._envelope.by_key or key not in obj:
            return None, False
        raw = obj[key]
        body_cls = self._bodies.get(msg_type)
        if raw is None:
            return None, True
        if body_cls is None:
            # An unknown type: an object is its body; anything else stays in `extra`.
            return (UnknownBody(dict(raw)), True) if isinstance(raw, dict) else (None, False)
        try:
            return cast(Body, self._cattrs.structure(raw, body_cls)), True
        except FieldTypeError as exc:
            exc.nest(key)
            raise

    def unstructure_message(self, msg: Message) -> dict[str, Any]:
        """The decoded JSON object of a message, extra keys included.

        Raises `ValueError` when the body's class does not belong to the type
        (under this dialect), since the result would not read back as `msg`.
        """
        out: dict[str, Any] = {}
        self._envelope.write(msg, out)
        if msg.body is not None or "body" in msg.null_keys:
            key = body_key(msg.type)
            if key in self._envelope.by_key:
                raise ValueError(f"a {msg.type} message cannot carry a body under {key!r}")
            expected = self._bodies.get(msg.type, UnknownBody)
            if msg.body is None:
                out[key] = None
            elif type(msg.body) is expected:
                out[key] = self._cattrs.unstructure(msg.body)
            else:
                raise ValueError(
                    f"a {msg.type} message needs a {expected.__name__} body, "
                    f"not {type(msg.body).__name__}"
                )
        _write_extra(msg, out)
        return out

    def _register_hooks(self) -> None:
        """Every hook of this converter, in one place."""
        c = self._cattrs
        leaves: list[tuple[Any, StructureHook]] = [
            (str, _structure_str),
            (int, _structure_int),
            (bool, _structure_bool),
            (Decimal, _structure_decimal),
            (Any, _structure_any),
        ]
        for leaf, structure in leaves:
            c.register_structure_hook(leaf, structure)
            c.register_unstructure_hook(leaf, _same)
        c.register_structure_hook_factory(_is_list, self._list_structure)
        c.register_unstructure_hook_factory(_is_list, self._list_unstructure)
        c.register_structure_hook_factory(_is_dict, self._dict_structure)
        c.register_unstructure_hook_factory(_is_dict, self._dict_unstructure)
        c.register_structure_hook_factory(_is_record, self._record_structure)
        c.register_unstructure_hook_factory(_is_record, self._record_unstructure)
        c.register_structure_hook(UnknownBody, _structure_unknown_body)
        c.register_unstructure_hook(UnknownBody, _unstructure_unknown_body)
        c.register_structure_hook(Message, lambda obj, _: self.structure_message(obj))
        c.register_unstructure_hook(Message, self.unstructure_message)

    def _layout(self, cls: type[WireObject]) -> _Layout:
        layout = self._layouts.get(cls)
        if layout is None:
            layout = self._layouts[cls] = self._build_layout(cls)
        return layout

    def _build_layout(self, cls: type[WireObject]) -> _Layout:
        skip = _NOT_FIELDS | (_ENVELOPE_SPECIAL if cls is Message else frozenset())
        fields: list[_Field] = []
        for attribute in attrs.fields(attrs.resolve_types(cls)):
            if attribute.name in skip:
                continue
            value_type = _without_none(attribute.type)
            fields.append(
                _Field(
                    attr=attribute.name,
                    key=self._keys.get((cls, attribute.name), camel_case(attribute.name)),
                    type=value_type,
                    structure=self._cattrs.get_structure_hook(value_type),
                    unstructure=self._cattrs.get_unstructure_hook(value_type),
                )
            )
        by_key = {field.key: field for field in fields}
        if len(by_key) != len(fields):
            raise ValueError(f"the dialect gives two fields of {cls.__name__} the same key")
        return _Layout(tuple(fields), by_key)

    def _record_structure(self, cls: type[WireObject]) -> StructureHook:
        layout = self._layout(cls)

        def structure(obj: Any, _: Any) -> WireObject:
            if not isinstance(obj, dict):
                raise FieldTypeError("object", json_kind(obj))
            return cls(**layout.read(obj))

        return structure

    def _record_unstructure(self, cls: type[WireObject]) -> UnstructureHook:
        layout = self._layout(cls)

        def unstructure(value: WireObject) -> dict[str, Any]:
            out: dict[str, Any] = {}
            layout.write(value, out)
            _write_extra(value, out)
            return out

        return unstructure

    def _list_structure(self, list_type: Any) -> StructureHook:
        (item_type,) = get_args(list_type)
        structure_item = self._cattrs.get_structure_hook(item_type)

        def structure(value: Any, _: Any) -> list[Any]:
            if not isinstance(value, list):
                raise FieldTypeError("array", json_kind(value))
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(structure_item(item, item_type))
                except FieldTypeError as exc:
                    exc.nest(index)
                    raise
            return items

        return structure

    def _list_unstructure(self, list_type: Any) -> UnstructureHook:
        (item_type,) = get_args(list_type)
        unstructure_item = self._cattrs.get_unstructure_hook(item_type)
        return lambda value: [unstructure_item(item) for item in value]

    def _dict_structure(self, dict_type: Any) -> StructureHook:
        _, value_type = get_args(dict_type)
        structure_value = self._cattrs.get_structure_hook(value_type)

        def structure(value: Any, _: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise FieldTypeError("object", json_kind(value))
            entries = {}
            for key, item in value.items():
                try:
                    entries[key] = structure_value(item, value_type)
                except FieldTypeError as exc:
                    exc.nest(key)
                    raise
            return entries

        return structure

    def _dict_unstructure(self, dict_type: Any) -> UnstructureHook:
        _, value_type = get_args(dict_type)
        unstructure_value = self._cattrs.get_unstructure_hook(value_type)
        return lambda value: {key: unstructure_value(item) for key, item in value.items()}


@functools.cache
def converter_for(dialect: Dialect) -> P3Converter:
    """The shared converter of a dialect (dialects are frozen, so they key a cache)."""
    return P3Converter(dialect)


def _dialect_keys(dialect: Dialect) -> dict[tuple[type[WireObject], str], str]:
    """The wire keys the dialect names; every other key is the camelCase attribute."""
    return {
        (ExecuteTransactionAction, "action"): dialect.action.action_key,
        (SubmitSignatureRequest, "signature"): dialect.signature.signature_key,
        (SubmitSignatureRequest, "sign_on_receipt"): dialect.signature.on_receipt_key,
        (P3Error, "type"): dialect.error.type_key,
        (P3Error, "source"): dialect.error.source_key,
        (P3Error, "message"): dialect.error.message_key,
        (AbortTransactionRequest, "transaction_tag"): dialect.abort.tag_key,
    }


def _body_classes(dialect: Dialect) -> dict[str, type[WireObject]]:
    bodies = dict(_FIXED_BODIES)
    for name, cls in (
        (dialect.abort.request_type, AbortTransactionRequest),
        (dialect.abort.response_type, AbortTransactionResponse),
    ):
        if name in bodies:
            raise ValueError(f"the dialect's abort type {name!r} is already another message type")
        bodies[name] = cls
    return bodies


def _without_none(field_type: Any) -> Any:
    """`X | None` -> `X`: a null is recorded in `null_keys`, never structured."""
    if get_origin(field_type) not in (Union, UnionType):
        return field_type
    rest = [arg for arg in get_args(field_type) if arg is not NoneType]
    if len(rest) != 1:
        raise TypeError(f"model fields are one type or None, not {field_type}")
    return rest[0]


def _is_list(field_type: Any) -> bool:
    return get_origin(field_type) is list


def _is_dict(field_type: Any) -> bool:
    return get_origin(field_type) is dict


def _is_record(field_type: Any) -> bool:
    return (
        isinstance(field_type, type)
        and issubclass(field_type, WireObject)
        and field_type is not Message
    )


def _same(value: Any) -> Any:
    return value


def _structure_any(value: Any, _: Any) -> Any:
    return value


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise FieldTypeError("string", json_kind(value))


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise FieldTypeError("integer", json_kind(value))


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise FieldTypeError("boolean", json_kind(value))


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise FieldTypeError("number", json_kind(value))
    # A float becomes its shortest text (0.1 -> 0.1), not its binary expansion.
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise FieldTypeError("finite number", str(value))
    return number


def _structure_unknown_body(value: Any, _: Any) -> UnknownBody:
    if not isinstance(value, dict):
        raise FieldTypeError("object", json_kind(value))
    return UnknownBody(dict(value))


def _unstructure_unknown_body(body: UnknownBody) -> dict[str, Any]:
    return dict(body.data)
