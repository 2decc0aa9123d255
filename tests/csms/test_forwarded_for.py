"""The charger's address behind a load balancer: X-Forwarded-For is believed only from the
trusted proxies, and only the hop our proxy added (a client can write anything to the left)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from websockets.datastructures import Headers

from csms.ocpp.server import _host
from csms.settings import OcppSettings


def _connection(peer: str, *forwarded: str) -> Any:
    headers = Headers([("X-Forwarded-For", f) for f in forwarded])
    return SimpleNamespace(remote_address=(peer, 50000), request=SimpleNamespace(headers=headers))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("10.0.0.9", ("203.0.113.7",), (), "10.0.0.9"),  # no trusted proxy: the peer
        ("10.0.0.9", ("203.0.113.7",), ("127.0.0.1",), "10.0.0.9"),  # peer is not a proxy
        ("127.0.0.1", ("203.0.113.7",), ("127.0.0.1",), "203.0.113.7"),
        ("::ffff:127.0.0.1", ("203.0.113.7",), ("127.0.0.1",), "203.0.113.7"),
        # A forged hop on the left is ignored: the rightmost one our proxy added counts.
        ("127.0.0.1", ("6.6.6.6, 203.0.113.7",), ("127.0.0.1",), "203.0.113.7"),
        ("127.0.0.1", ("6.6.6.6", "203.0.113.7"), ("127.0.0.1",), "203.0.113.7"),
        # Chained trusted proxies are skipped.
        ("127.0.0.1", ("203.0.113.7, 10.1.1.1",), ("127.0.0.1", "10.1.1.1"), "203.0.113.7"),
        ("127.0.0.1", (), ("127.0.0.1",), "127.0.0.1"),  # no header: the proxy itself
    ],
)
def test_the_address_is_taken_from_the_trusted_proxy_hop(
    peer: str, forwarded: tuple[str, ...], trusted: tuple[str, ...], expected: str
) -> None:
    assert _host(_connection(peer, *forwarded), frozenset(trusted)) == expected


def test_trusted_proxies_must_be_addresses() -> None:
    assert OcppSettings(trusted_proxies=" 127.0.0.1, ::1 ").proxy_addresses == ["127.0.0.1", "::1"]
    with pytest.raises(ValidationError, match="'nginx' is not an IP address"):
        OcppSettings(trusted_proxies="127.0.0.1,nginx")
