"""The cluster launcher (``deploy.cluster``): the nginx configuration it renders, its checks, and a
real cluster of two workers behind nginx that keeps answering when a worker is killed.

The real cluster needs nginx, PostgreSQL (``CSMS_TEST_PG``) and Redis (``CSMS_TEST_REDIS``); it
is skipped, with the reason, when one of them is missing. It runs on free ports, under a Redis key
prefix and in a database of its own, both removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
from pathlib import Path

import httpx
import pytest
import redis
from websockets.sync.client import connect

from deploy.cluster import (
    Cluster,
    ClusterSpec,
    check_prerequisites,
    drop_database,
    find_nginx,
    free_port,
    nginx_conf_problem,
    render_nginx_conf,
    write_nginx_conf,
)

PG_ADMIN = os.environ.get("CSMS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CSMS_TEST_REDIS", "redis://127.0.0.1:6379/0")
WORKERS = [(9101, 8101), (9102, 8102), (9103, 8103)]


def _block(conf: str, header: str) -> str:
    """The body of the ``header { ... }`` block (upstream blocks hold no nested braces)."""
    match = re.search(re.escape(header) + r"\s*\{([^}]*)\}", conf)
    assert match is not None, f"no {header!r} block"
    return match.group(1)


def test_every_worker_is_in_both_upstreams_and_no_placeholder_is_left(tmp_path: Path) -> None:
    conf = render_nginx_conf(tmp_path, 9000, 8000, WORKERS)
    ocpp, http = _block(conf, "upstream csms_ocpp"), _block(conf, "upstream csms_http")
    for ocpp_port, http_port in WORKERS:
        assert f"server 127.0.0.1:{ocpp_port} max_fails=1 fail_timeout=5s;" in ocpp
        assert f"server 127.0.0.1:{http_port} max_fails=1 fail_timeout=5s;" in http
        assert str(http_port) not in ocpp
        assert str(ocpp_port) not in http
    assert "least_conn;" in ocpp
    assert "listen 127.0.0.1:9000;" in conf
    assert "listen 127.0.0.1:8000;" in conf
    assert "@@" not in conf
    # everything nginx writes stays in the run directory
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path", "proxy_temp_path"):
        assert re.search(rf'{directive} "{re.escape(str(tmp_path.resolve()))}/', conf), directive


def test_the_websocket_headers_are_set(tmp_path: Path) -> None:
    conf = render_nginx_conf(tmp_path, 9000, 8000, WORKERS)
    for line in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_next_upstream error timeout;",
        "proxy_connect_timeout 2s;",
        "proxy_buffering off;",
    ):
        assert line in conf


def test_a_run_dir_nginx_cannot_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run directory"):
        render_nginx_conf(tmp_path / 'a"b', 9000, 8000, WORKERS)


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    write_nginx_conf(tmp_path, free_port(), free_port(), WORKERS)
    assert nginx_conf_problem(nginx, tmp_path) is None


def test_missing_prerequisites_are_named_one_line_each(tmp_path: Path) -> None:
    closed = free_port()
    spec = ClusterSpec(
        nginx=str(tmp_path / "no-nginx"),
        database_url=f"postgresql://postgres@127.0.0.1:{closed}/x",
        redis_url=f"redis://127.0.0.1:{closed}/0",
        run_dir=tmp_path,
    )
    problems = check_prerequisites(spec)
    assert any("apt-get install nginx-light" in p for p in problems), problems
    assert any(f"PostgreSQL is not reachable at {spec.database_url}" in p for p in problems)
    assert any(f"Redis is not reachable at {spec.redis_url}" in p for p in problems)
    assert all("\n" not in p for p in problems)


def _boot(url: str) -> str:
    """Open an OCPP 1.6 websocket at ``url``, send a BootNotification, return its status."""
    with connect(url, subprotocols=["ocpp1.6"], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"  # Sec-WebSocket-Protocol went through nginx
        boot = {"chargePointVendor": "test", "chargePointModel": "launcher"}
        ws.send(json.dumps([2, "1", "BootNotification", boot]))
        answer = json.loads(ws.recv(timeout=10))
    assert answer[:2] == [3, "1"], answer
    return str(answer[2]["status"])


def _served_by(cluster: Cluster, times: int) -> set[int]:
    """The OCPP ports of the workers that answered ``times`` GET /api/health through nginx."""
    ports = set()
    for _ in range(times):
        answer = httpx.get(f"{cluster.http_url}/api/health", timeout=10)
        assert answer.status_code == 200, answer.text
        ports.add(int(answer.json()["ocpp_port"]))
    return ports


@pytest.mark.slow
def test_a_cluster_behind_nginx_keeps_answering_when_a_worker_dies(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    spec = ClusterSpec(
        workers=2,
        ocpp_port=free_port(),
        http_port=free_port(),
        worker_ocpp_ports_from=0,
        worker_http_ports_from=0,
        database_url=f"{PG_ADMIN.rsplit('/', 1)[0]}/csms_launcher_{token}",
        redis_url=REDIS_URL,
        key_prefix=f"test-launcher-{token}:",
        run_dir=tmp_path / "cluster",
        allow_unknown_chargers=True,
        stop_timeout_s=15,
    )
    problems = check_prerequisites(spec)
    if problems:
        pytest.skip("; ".join(problems))
    try:
        with Cluster(spec) as cluster:
            first, second = cluster.workers
            assert first.alive
            assert second.alive
            assert cluster.password_file.exists()  # written once, by the first worker
            assert _served_by(cluster, 6) == {first.ocpp_port, second.ocpp_port}
            assert _boot(f"{cluster.ocpp_url}/LAUNCH-1") == "Accepted"

            assert cluster.kill_worker(0) == -signal.SIGKILL
            assert _served_by(cluster, 6) == {second.ocpp_port}
            assert _boot(f"{cluster.ocpp_url}/LAUNCH-2") == "Accepted"
            assert cluster.check() == []  # that death was asked for

            cluster.restart_worker(0)
            assert first.alive
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)  # a crash nobody asked for
            first.proc.wait(timeout=10)  # type: ignore[union-attr]
            reported = cluster.check()
            assert len(reported) == 1
            assert reported[0].startswith("worker-1 ")
            assert _served_by(cluster, 4) == {second.ocpp_port}
        assert second.returncode is not None  # stopped with the cluster
        assert not cluster.nginx_alive
    finally:
        drop_database(spec.database_url)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{spec.key_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
