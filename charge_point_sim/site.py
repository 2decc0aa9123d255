"""The site description file (JSON): which chargers, their hardware, versions, passwords and quirks.

See ``README.md`` in this package for the format. :func:`load_site` raises
:class:`~charge_point_sim.errors.InvalidModelError` naming the first problem it finds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.quirks import Quirks
from charge_point_sim.runner import VERSIONS, ChargerConfig

_CHARGER_KEYS = frozenset(
    {
        "id",
        "count",
        "version",
        "connectors",
        "max_power_kw",
        "phases",
        "voltage",
        "password",
        "quirks",
        "stations",
    }
)


@dataclass(frozen=True, slots=True)
class SiteCharger:
    """A charger of the site and the ACN station ids of its connectors (index 0 = connector 1)."""

    config: ChargerConfig
    stations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Site:
    """A site: its chargers and its grid cap (informational: the report compares against it).

    ``iso15118_share``: the share of its EVs that speak ISO 15118 (None: not set here).
    ``ca_file``: the CA certificate (PEM) a ``wss://`` central system's certificate is checked
    against (None: the system's trust store).
    """

    name: str
    chargers: tuple[SiteCharger, ...]
    cap_kw: float | None = None
    iso15118_share: float | None = None
    ca_file: Path | None = None

    @property
    def configs(self) -> list[ChargerConfig]:
        return [c.config for c in self.chargers]


def _number(obj: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidModelError(f"{where}: {key} must be a number")
    if value <= 0:
        raise InvalidModelError(f"{where}: {key} must be > 0")
    return float(value)


def _integer(obj: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidModelError(f"{where}: {key} must be an integer >= 1")
    return value


def _charger(raw: object, n: int) -> list[SiteCharger]:
    where = f"chargers[{n}]"
    if not isinstance(raw, Mapping):
        raise InvalidModelError(f"{where} must be an object")
    unknown = sorted(set(raw) - _CHARGER_KEYS)
    if unknown:
        raise InvalidModelError(f"{where}: unknown keys {', '.join(unknown)}")
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid or "/" in cid:
        raise InvalidModelError(f"{where}: id must be a non-empty string without '/'")
    version = raw.get("version", "1.6")
    if version not in VERSIONS:
        raise InvalidModelError(f"{where}: version must be one of {', '.join(VERSIONS)}")
    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        raise InvalidModelError(f"{where}: password must be a string")
    quirks_raw = raw.get("quirks", {})
    if not isinstance(quirks_raw, Mapping):
        raise InvalidModelError(f"{where}: quirks must be an object")
    try:
        quirks = Quirks.from_json(quirks_raw)
    except InvalidModelError as e:
        raise InvalidModelError(f"{where}: {e}") from e
    connectors = _integer(raw, "connectors", 1, where)
    phases = _integer(raw, "phases", 3, where)
    if phases > 3:
        raise InvalidModelError(f"{where}: phases must be 1, 2 or 3")
    spec = ChargerSpec.uniform(
        connectors,
        _number(raw, "max_power_kw", 22.0, where) * 1000.0,
        phases=phases,
        voltage_v=_number(raw, "voltage", 230.0, where),
    )
    stations = raw.get("stations", [])
    if not isinstance(stations, Sequence) or not all(isinstance(s, str) for s in stations):
        raise InvalidModelError(f"{where}: stations must be a list of strings")
    count = _integer(raw, "count", 1, where)
    if count > 1 and stations:
        raise InvalidModelError(f"{where}: stations cannot be combined with count")
    if len(stations) > connectors:
        raise InvalidModelError(f"{where}: more stations than connectors")
    ids = [cid] if count == 1 else [f"{cid}{i:0{len(str(count))}d}" for i in range(1, count + 1)]
    return [
        SiteCharger(ChargerConfig(i, version, spec, password, quirks), tuple(stations)) for i in ids
    ]


def parse_site(data: object) -> Site:
    """A site from the parsed JSON of a site file."""
    if not isinstance(data, Mapping):
        raise InvalidModelError("the site file must hold a JSON object")
    unknown = sorted(set(data) - {"name", "site_cap_kw", "chargers", "iso15118_share", "ca_file"})
    if unknown:
        raise InvalidModelError(f"site: unknown keys {', '.join(unknown)}")
    name = data.get("name", "site")
    if not isinstance(name, str):
        raise InvalidModelError("site: name must be a string")
    cap = None if data.get("site_cap_kw") is None else _number(data, "site_cap_kw", 0, "site")
    share = data.get("iso15118_share")
    if share is not None and (
        isinstance(share, bool)
        or not isinstance(share, int | float)
        or not 0 <= share <= 1  # also false for NaN
    ):
        raise InvalidModelError("site: iso15118_share must be a number within [0, 1]")
    ca_file = data.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise InvalidModelError("site: ca_file must be a path")
    raw = data.get("chargers")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise InvalidModelError("site: chargers must be a non-empty list")
    chargers = [c for n, r in enumerate(raw) for c in _charger(r, n)]
    seen: set[str] = set()
    for c in chargers:
        if c.config.charger_id in seen:
            raise InvalidModelError(f"site: charger id {c.config.charger_id} appears twice")
        seen.add(c.config.charger_id)
    return Site(
        name,
        tuple(chargers),
        cap,
        None if share is None else float(share),
        None if ca_file is None else Path(ca_file),
    )


def load_site(path: Path) -> Site:
    """Read and check a site file; a relative ``ca_file`` is relative to the site file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidModelError(f"site file {path}: {e}") from e
    site = parse_site(data)
    if site.ca_file is not None and not site.ca_file.is_absolute():
        site = replace(site, ca_file=path.parent / site.ca_file)
    return site
