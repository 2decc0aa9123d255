"""Secrets out of what we keep: the message log, the command log and the websockets debug log.

A charger's Basic-auth password travels in OCPP itself when the central system sets it: 1.6 as the
``AuthorizationKey`` configuration key (security whitepaper, a write-only key sent with
ChangeConfiguration), 2.0.1 as the ``SecurityCtrlr.BasicAuthPassword`` variable (part 2, use case
A01, sent with SetVariables; also write-only). Both are the credential itself, so the stored
copies say ``[redacted]`` instead. And at DEBUG the websockets package logs every handshake header,
the ``Authorization`` header among them (base64 is not encryption), and the start of every frame.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable
from typing import Any, Final, Protocol

from csms.domain.commands import CommandResult
from csms.ocpp.connection import MessageSink

REDACTED: Final = "[redacted]"
SECRET_CONFIGURATION_KEYS: Final = frozenset({"AuthorizationKey"})  # 1.6 whitepaper
SECRET_VARIABLES: Final = frozenset({"BasicAuthPassword"})  # 2.0.1 SecurityCtrlr
SECRET_MARKERS: Final = SECRET_CONFIGURATION_KEYS | SECRET_VARIABLES
SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def redact(value: Any) -> Any:
    """The OCPP payload with every secret value replaced by ``[redacted]``: a copy when it holds
    one (the caller's object is never changed), else the payload itself.

    Shape-based, so it covers requests and answers alike without knowing the action (a CALLRESULT
    does not name one): a ``{"key": "AuthorizationKey", "value": ...}`` entry (1.6
    ChangeConfiguration, GetConfiguration's answer), and anything whose ``variable`` is
    BasicAuthPassword (2.0.1 SetVariables / GetVariables data and results, NotifyReport). A frame
    that could not be parsed is kept raw: if it mentions a secret, it is not kept at all.
    """
    # Every rule below needs a string that mentions a secret's name: most frames have none, and
    # this check (no copies) is about a quarter of the cost of the copying walk.
    return _redact(value) if _mentions_secret(value) else value


def _mentions_secret(value: Any, markers: tuple[str, ...] = tuple(SECRET_MARKERS)) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            for marker in markers:  # a plain loop: any() with a generator costs twice as much
                if marker in item:
                    return True
    return False


def _redact(value: Any) -> Any:
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _redact(v) for k, v in value.items()}
    key = out.get("key")  # a str in a configuration entry, a list in GetConfiguration's request
    if isinstance(key, str) and key in SECRET_CONFIGURATION_KEYS and "value" in out:
        out["value"] = REDACTED
    variable = out.get("variable")
    name = variable.get("name") if isinstance(variable, dict) else None
    if isinstance(name, str) and name in SECRET_VARIABLES:
        if "attributeValue" in out:
            out["attributeValue"] = REDACTED
        attributes = out.get("variableAttribute")
        if isinstance(attributes, list):
            out["variableAttribute"] = [
                {**a, "value": REDACTED} if isinstance(a, dict) and "value" in a else a
                for a in attributes
            ]
    raw = out.get("raw")
    if len(out) == 1 and isinstance(raw, str) and any(m in raw for m in SECRET_MARKERS):
        out["raw"] = f"{REDACTED} (an unparsed frame that mentions a secret)"
    return out


class RedactingSink:
    """The message log's sink, secrets removed before anything is written."""

    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink

    async def log_messages_raw(self, rows: list[dict[str, Any]]) -> None:
        """Redact each row's payload, then append the rows."""
        for row in rows:
            # In place, on purpose: the writer logs a row the database refuses, and that copy
            # must be the redacted one too.
            row["payload"] = redact(row.get("payload"))
        await self._sink.log_messages_raw(rows)


class CommandRecorder(Protocol):
    """Where outbound calls are recorded (the station service)."""

    def record_command(
        self, charge_point_id: str, action: str, request: dict[str, Any], result: CommandResult
    ) -> Awaitable[None]:
        """Append one outbound call."""
        ...


class RedactingRecorder:
    """The command log (``outbound_call``), secrets removed from requests and answers."""

    def __init__(self, recorder: CommandRecorder) -> None:
        self._recorder = recorder

    async def record_command(
        self, charge_point_id: str, action: str, request: dict[str, Any], result: CommandResult
    ) -> None:
        """Record the call with its secrets replaced."""
        await self._recorder.record_command(
            charge_point_id,
            action,
            redact(request),
            dataclasses.replace(result, payload=redact(result.payload)),
        )


def _safe_arg(msg: object, args: tuple[object, ...]) -> tuple[object, ...]:
    if msg in ("< %s: %s", "> %s: %s") and len(args) == 2:
        name = str(args[0]).lower()
        if name in SECRET_HEADERS:
            return (args[0], REDACTED)
    elif msg in ("< %s", "> %s") and len(args) == 1:
        text = str(args[0])
        if any(m in text for m in SECRET_MARKERS):
            return (f"{REDACTED} (a frame that carries a secret)",)
    return args


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """The websockets server's logger, with secret headers and frames left out of its DEBUG lines
    (websockets logs ``"< %s: %s"`` per request header and ``"< %s"`` per frame)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, None)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log, with secret arguments replaced."""
        if args and self.isEnabledFor(level):
            args = _safe_arg(msg, args)
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """Keep the caller's ``extra`` (the default adapter would drop it)."""
        return msg, kwargs
