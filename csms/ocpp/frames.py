"""Checks of raw OCPP-J frames before the ocpp package sees them (pure).

The ocpp package logs and drops frames it cannot parse, without a reply, and takes whatever Python's
``json`` reads (NaN, 10**4000, lone surrogates). OCPP-J (1.6 §4, 2.0.1 part 4 §4) wants a CALLERROR
for a CALL that is not a proper message, so frames are checked here first: their structure, then
every value in them, for what no OCPP message may hold and storage cannot take.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ocpp.exceptions import OCPPError

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_ID_LENGTH = 36  # the message id is string[36] (1.6 §4.1.4, 2.0.1 part 4 §4.1.4)
# The deepest OCPP schema (2.0.1 NotifyReport, SetChargingProfile) nests under 10 levels; only
# customData may hold more. Deeper payloads are refused before anything recurses over them.
MAX_DEPTH = 32
# OCPP integers are 32-bit (2.0.1 part 2, primitive datatypes; 1.6's SOAP schema: xs:int),
# and our integer columns are too: a bigger one would fail a whole batch of other chargers' rows.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Text that PostgreSQL cannot store (NUL) or that is not Unicode (lone surrogates, which only
# \\u escapes can make): no OCPP string has a use for either.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
# The ocpp package turns a CALLERROR with any other code into an exception its caller does not
# expect (UnknownCallErrorCodeError); 2.0.1's RpcFrameworkError and MessageTypeNotSupported are
# not in it.
PACKAGE_ERROR_CODES = frozenset(
    str(code) for cls in OCPPError.__subclasses__() if (code := getattr(cls, "code", None))
)


class _NotJson:
    """Stands for NaN / Infinity / -Infinity, which Python reads but JSON does not have."""


_NOT_JSON = _NotJson()


class _SuspectValueError(Exception):
    """A number out of range, or NaN / Infinity: read the frame again, leniently, and walk it."""


def _int(digits: str) -> int:
    value = int(digits)
    if not INT_MIN <= value <= INT_MAX:
        raise _SuspectValueError
    return value


def _float(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise _SuspectValueError
    return value


def _constant(_name: str) -> Any:
    raise _SuspectValueError


# Decoders made once (json.loads with arguments builds one per call).
_STRICT = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)
_LENIENT = json.JSONDecoder(parse_constant=lambda _name: _NOT_JSON)


def _error(version: str, unique_id: str, code: str, description: str) -> str:
    if version == "ocpp1.6":
        if code == "FormatViolation":
            code = "FormationViolation"  # the 1.6 spec's spelling (the ocpp package uses 2.0.1's)
        elif code == "RpcFrameworkError":
            code = "FormationViolation"  # 1.6 has no RpcFrameworkError
    return json.dumps([CALLERROR, unique_id, code, description, {}])


def check_frame(
    raw: str | bytes, version: str, known_actions: frozenset[str] = frozenset()
) -> str | None:
    """The CALLERROR frame to send back, or None (a well-formed frame, or one dropped unanswered)."""
    return parse_frame(raw, version, known_actions)[1]


def _readable_id(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH and not _BAD_CHARS.search(value):
        return value
    return None


def parse_frame(
    raw: str | bytes, version: str, known_actions: frozenset[str] = frozenset()
) -> tuple[list[Any] | None, str | None]:
    """``(message, None)`` for a well-formed frame; ``(None, CALLERROR to send back)``; or
    ``(None, None)`` for a malformed CALLERROR, which is dropped: answering an error with an error
    could start a loop between two peers (2.0.1 part 4 §4.2.3 allows dropping invalid messages).

    A CALL whose action is not in ``known_actions`` (when given) is answered NotImplemented:
    "Requested Action is not known by receiver" (1.6 §4.2.3; the ocpp package says NotSupported).
    Where 2.0.1 has RpcFrameworkError ("not a valid RPC request, e.g. the MessageId could not be
    read", part 4 §4.3) it is used; 1.6 says FormationViolation there.
    """
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    # Walking every value costs more than parsing: only frames that may hold a bad one are walked.
    # Numbers are checked as they are read; NUL and lone surrogates can only come from \\u escapes
    # (websockets checks that text frames are UTF-8); nesting deeper than MAX_DEPTH needs more than
    # MAX_DEPTH brackets.
    try:
        try:
            msg: Any = _STRICT.decode(text)
            suspect = "\\u" in text or text.count("{") + text.count("[") > MAX_DEPTH
        except _SuspectValueError:
            msg, suspect = _LENIENT.decode(text), True
    except (ValueError, RecursionError):  # JSONDecodeError; also ints of > 4300 digits
        return None, _error(version, "-1", "FormatViolation", "frame is not valid JSON")
    if not isinstance(msg, list) or not msg:
        return None, _error(version, "-1", "RpcFrameworkError", "frame is not a JSON array")
    kind = msg[0]
    unique_id = _readable_id(msg[1]) if len(msg) > 1 else None
    if kind not in (CALL, CALLRESULT, CALLERROR) or isinstance(kind, bool):
        code = "MessageTypeNotSupported" if version != "ocpp1.6" else "PropertyConstraintViolation"
        return None, _error(
            version, "-1" if unique_id is None else unique_id, code, "unknown message type"
        )
    if kind == CALLERROR:
        # Tolerant: a missing or null description or details is taken (the package fills them).
        ok = (
            unique_id is not None
            and len(msg) in (4, 5)
            and isinstance(msg[2], str)
            and isinstance(msg[3], str | None)
            and isinstance(msg[4] if len(msg) == 5 else None, dict | None)
            and not (suspect and _value_problem(msg))
        )
        return (msg, None) if ok else (None, None)
    if unique_id is None:
        return None, _error(
            version, "-1", "RpcFrameworkError", f"message id must be a string of <= {MAX_ID_LENGTH}"
        )
    if kind == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            return None, _error(
                version, unique_id, "FormatViolation", "a CALL is [2, id, action, {payload}]"
            )
        if known_actions and msg[2] not in known_actions:
            action = msg[2][:64]
            return None, _error(version, unique_id, "NotImplemented", f"unknown action {action!r}")
    elif len(msg) != 3 or not isinstance(msg[2], dict):
        return None, _error(
            version, unique_id, "FormatViolation", "a CALLRESULT is [3, id, {payload}]"
        )
    problem = _value_problem(msg) if suspect else None
    if problem is not None:
        return None, _error(version, unique_id, *problem)
    return msg, None


def _value_problem(message: list[Any]) -> tuple[str, str] | None:
    """(error code, description) for the first value no OCPP message may hold, else None.

    Iterative, so that a deep payload cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(message, 0)]
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is str:
            if _BAD_CHARS.search(value):
                return "PropertyConstraintViolation", "a string holds NUL or a lone surrogate"
        elif kind is int:
            if not INT_MIN <= value <= INT_MAX:
                return "TypeConstraintViolation", "an integer is outside 32 bits"
        elif kind is float:
            if not math.isfinite(value):
                return "TypeConstraintViolation", "a number is out of range"
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                return "FormatViolation", f"nested deeper than {MAX_DEPTH} levels"
            if kind is dict:
                for key, item in value.items():
                    if _BAD_CHARS.search(key):
                        return "PropertyConstraintViolation", "a key holds NUL or a lone surrogate"
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif value is _NOT_JSON:
            return "FormatViolation", "NaN and Infinity are not JSON"
    return None


def for_package(msg: list[Any]) -> str | None:
    """A CALLERROR the ocpp package can take in place of ``msg``, when its code is one the package
    does not know (e.g. 2.0.1's RpcFrameworkError); None when ``msg`` is fine as it is."""
    if msg[0] != CALLERROR or msg[2] in PACKAGE_ERROR_CODES:
        return None
    description = f"{msg[2]}: {msg[3] or ''}"[:255]  # errorDescription is string[255]
    details = msg[4] if len(msg) == 5 and msg[4] is not None else {}
    return json.dumps([CALLERROR, msg[1], "GenericError", description, details])


def fix_outgoing(text: str, version: str) -> str:
    """Spell 1.6 error codes as the 1.6 spec does in CALLERRORs the ocpp package produces."""
    if version == "ocpp1.6" and text.startswith("[4") and '"FormatViolation"' in text:
        return text.replace('"FormatViolation"', '"FormationViolation"', 1)
    return text


def summary(raw: str, msg: list[Any] | None = None) -> tuple[int, str, str | None, Any]:
    """(message type, unique id, action, payload) of a well-formed frame, for the message log."""
    if msg is None:
        msg = json.loads(raw)
    kind, unique_id = int(msg[0]), str(msg[1])
    if kind == 0:  # placeholder for a frame that could not be parsed
        return 0, unique_id, None, msg[3]
    if kind == CALL:
        return kind, unique_id, str(msg[2]), msg[3]
    if kind == CALLRESULT:
        return kind, unique_id, None, msg[2]
    return kind, unique_id, str(msg[2]) if len(msg) > 2 else None, msg[2:]
