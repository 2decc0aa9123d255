"""JSON for what crosses between workers: commands, their results and live notices.

Pure functions. Decoding is strict (unknown type or field, wrong value type: ``CodecError``) so a
worker never runs a command that means something else than what was sent — e.g. from a newer
worker version during a rolling upgrade. Every type in the ``Command`` union is covered (tested).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

from csms.domain.commands import Command, CommandResult
from csms.services.notifications import Notice


class CodecError(ValueError):
    """What was to be encoded or decoded is not a valid message."""


COMMAND_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(Command)}


def encode_command(command: Command) -> dict[str, Any]:
    """``{"type": "StartCharging", "id_tag": ..., ...}`` (``dumps`` refuses what JSON cannot
    carry, e.g. a ``Decimal`` in a ``RawCall`` payload)."""
    name = type(command).__name__
    if COMMAND_TYPES.get(name) is not type(command):
        raise CodecError(f"{name} is not a command")
    return {"type": name, **_fields_out(command)}


def decode_command(data: Any) -> Command:
    """The command ``encode_command`` made."""
    if not isinstance(data, dict):
        raise CodecError(f"a command is a JSON object, not {type(data).__name__}")
    fields = dict(data)
    name = fields.pop("type", None)
    cls = COMMAND_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"unknown command type {name!r}")
    command: Command = _build(cls, fields)
    return command


def encode_result(result: CommandResult) -> dict[str, Any]:
    """JSON-ready ``CommandResult``."""
    return _fields_out(result)


def decode_result(data: Any) -> CommandResult:
    """The result ``encode_result`` made."""
    if not isinstance(data, dict):
        raise CodecError(f"a result is a JSON object, not {type(data).__name__}")
    result: CommandResult = _build(CommandResult, data)
    return result


def encode_notice(notice: Notice) -> dict[str, Any]:
    """JSON-ready ``Notice`` (times as ISO 8601 with their offset)."""
    return _fields_out(notice)


def decode_notice(data: Any) -> Notice:
    """The notice ``encode_notice`` made."""
    if not isinstance(data, dict):
        raise CodecError(f"a notice is a JSON object, not {type(data).__name__}")
    notice: Notice = _build(Notice, data)
    return notice


def dumps(data: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities are refused (no JSON parser outside Python reads them)."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"not JSON-serialisable: {exc}") from exc


def loads(raw: str | bytes) -> dict[str, Any]:
    """A JSON object, or ``CodecError``."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CodecError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _fields_out(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:  # get_type_hints evaluates every annotation: once per type
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise CodecError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {
        name: _check(value, hints[name], f"{cls.__name__}.{name}") for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise CodecError(f"{cls.__name__}: {exc}") from exc


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` wants it, or ``CodecError``. Only what our message types use."""
    origin = get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, where)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError("; ".join(errors))
    if origin is Literal:
        if value not in get_args(hint):
            raise CodecError(f"{where}: {value!r} is not one of {get_args(hint)}")
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise CodecError(f"{where}: expected an object, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise CodecError(f"{where}: expected a boolean, got {type(value).__name__}")
        return value
    if hint is int:
        # bool is an int in Python, never on the wire.
        if not isinstance(value, int) or isinstance(value, bool):
            raise CodecError(f"{where}: expected an integer, got {type(value).__name__}")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CodecError(f"{where}: expected a number, got {type(value).__name__}")
        try:
            return float(value)
        except OverflowError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    if hint is str:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected a string, got {type(value).__name__}")
        return value
    if hint is datetime:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected an ISO 8601 time, got {type(value).__name__}")
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    raise CodecError(f"{where}: no codec for {hint!r}")  # a new field type: extend _check
