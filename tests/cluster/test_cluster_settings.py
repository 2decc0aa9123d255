"""Cluster settings at the entry point: a bad or unreachable Redis is one line on stderr and exit
status 2 (no traceback), and a password in the URL is never echoed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from csms.__main__ import main
from csms.cluster.settings import ClusterSettings, redacted
from tests.faults.processes import free_port


def test_an_unreachable_redis_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    port = free_port()
    monkeypatch.setenv("CSMS_CLUSTER__REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    monkeypatch.setenv("CSMS_DATABASE__URL", "sqlite:///:memory:")
    assert main(["--ocpp-port", "0", "--http-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "CSMS_CLUSTER__REDIS_URL" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_a_url_that_is_not_redis_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CSMS_CLUSTER__REDIS_URL", "http://:hunter2@cache:6379")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "redis_url must start with redis://" in err
    assert "hunter2" not in err


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted("redis://user:pw@h/1") == "redis://user:***@h/1"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"


def test_the_fence_margin_must_leave_room_for_renewals() -> None:
    with pytest.raises(ValidationError, match="fence_margin_s"):
        ClusterSettings(lease_ttl_s=2.0, fence_margin_s=1.0)
