"""Checks of raw OCPP-J frames before the ocpp package sees them (pure).

The ocpp package logs and drops frames it cannot parse, without a reply. OCPP-J (1.6 §4.2, 2.0.1
part 4 §4.2) wants a CALLERROR, so frames are checked here first and the right one is returned.
"""

from __future__ import annotations

import json
from typing import Any

CALL, CALLRESULT, CALLERROR = 2, 3, 4


def _error(version: str, unique_id: str, code: str, description: str) -> str:
    if version == "ocpp1.6" and code == "FormatViolation":
        code = "FormationViolation"  # the 1.6 spec's spelling (the ocpp package uses 2.0.1's)
    return json.dumps([CALLERROR, unique_id, code, description, {}])


def check_frame(
    raw: str | bytes, version: str, known_actions: frozenset[str] = frozenset()
) -> str | None:
    """None when the frame is well formed; otherwise the CALLERROR frame to send back."""
    return parse_frame(raw, version, known_actions)[1]


def parse_frame(
    raw: str | bytes, version: str, known_actions: frozenset[str] = frozenset()
) -> tuple[list[Any] | None, str | None]:
    """``(message, None)`` for a well-formed frame, else ``(None, CALLERROR frame to send back)``.

    A CALL whose action is not in ``known_actions`` (when given) is answered NotImplemented:
    "Requested Action is not known by receiver" (1.6 §4.2.3; the ocpp package says NotSupported).
    """
    try:
        msg: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None, _error(version, "-1", "FormatViolation", "frame is not valid JSON")
    if not isinstance(msg, list) or not msg:
        return None, _error(version, "-1", "FormatViolation", "frame is not a JSON array")
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else "-1"
    kind = msg[0]
    if kind not in (CALL, CALLRESULT, CALLERROR) or isinstance(kind, bool):
        code = "MessageTypeNotSupported" if version != "ocpp1.6" else "PropertyConstraintViolation"
        return None, _error(version, unique_id, code, f"unknown message type {kind!r}")
    if not isinstance(msg[1] if len(msg) > 1 else None, str) or len(unique_id) > 36:
        return None, _error(
            version, "-1", "FormatViolation", "message id must be a string of <= 36"
        )
    if kind == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            return None, _error(
                version, unique_id, "FormatViolation", "a CALL is [2, id, action, {payload}]"
            )
        if known_actions and msg[2] not in known_actions:
            return None, _error(version, unique_id, "NotImplemented", f"unknown action {msg[2]!r}")
    elif kind == CALLRESULT and (len(msg) != 3 or not isinstance(msg[2], dict)):
        return None, _error(
            version, unique_id, "FormatViolation", "a CALLRESULT is [3, id, {payload}]"
        )
    return msg, None


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
