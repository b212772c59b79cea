"""The MI in a running (in-process) server: core commands, HTTP and socket listeners."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sipline.hooks import hookimpl
from sipline.mi.service import ManagementInterface
from sipline.mi.unix import MAX_LINE, reachable_path
from sipline.routing.script import load_script
from sipline.server import StartupError
from sipline.testing import SipClient, free_port, inprocess_server, options_request

TOKEN = "s3cret-token"


class Acl:
    """A plugin with a command, a counted statistic (kept handle) and a gauge."""

    def __init__(self) -> None:
        self.hits: Any = None

    @hookimpl
    def register_mi_commands(self, register):
        register("acl:reload", self.reload, alias="acl_reload", params={"table": str},
                 help="reload the rules")

    @hookimpl
    def register_statistics(self, register):
        self.hits = register("acl:hits", kind="counter", help="requests checked")
        register("acl:rules", kind="gauge", function=lambda: 12)

    @hookimpl
    def route_request(self, ctx):
        self.hits.inc()

    async def reload(self, table: str = "acl") -> dict:
        return {"reloaded": table}


@contextlib.contextmanager
def mi_server(tmp_path: Path, plugins=None, mi: dict | None = None,
              script: Path | None = None) -> Iterator[tuple[Any, ManagementInterface, int]]:
    port = free_port()
    settings = {"http": f"127.0.0.1:{port}", "socket": str(tmp_path / "mi.sock"), **(mi or {})}
    toml: dict[str, Any] = {"mi": settings}
    if script is not None:
        toml["server"] = {"script": str(script)}
    loaded = load_script(script) if script is not None else None
    with inprocess_server(toml, plugins, script=loaded) as srv:
        interface = ManagementInterface(srv.server)
        srv.call(interface.start())
        try:
            yield srv, interface, port
        finally:
            srv.call(interface.stop())


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def rpc_http(port: int, method: str, params: Any = None, token: str | None = None) -> dict:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        payload["params"] = params
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, _, body = http_request(port, "POST", "/mi", json.dumps(payload).encode(), headers)
    assert status == 200, body
    return json.loads(body)


class SocketRpc:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        with reachable_path(path) as where:
            self.sock.connect(where)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict:
        return json.loads(self.file.readline())

    def call(self, method: str, params: Any = None) -> dict:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            payload["params"] = params
        self.send(json.dumps(payload).encode() + b"\n")
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def result(answer: dict) -> Any:
    assert "result" in answer, answer
    return answer["result"]


# ----------------------------------------------------------------------- statistics
def test_get_statistics_counts_requests_over_http_and_socket(tmp_path):
    acl = Acl()
    with mi_server(tmp_path, [("acl", acl)]) as (srv, _, port):
        client = SipClient(srv.address())
        for _ in range(3):
            msg = options_request(f"127.0.0.1:{srv.address()[1]}", local=client.local_hostport)
            assert client.request(msg).status == 200
        client.close()
        over_http = result(rpc_http(port, "get_statistics", [["core:", "acl:"]]))
        sock = SocketRpc(tmp_path / "mi.sock")
        over_socket = result(sock.call("statistics:get", {"statistics": "all"}))
        sock.close()
    assert over_http["core:rcv_requests"] == 3
    assert over_http["acl:hits"] == 3  # the plugin's kept handle
    assert over_http["acl:rules"] == 12
    assert over_socket["core:rcv_requests"] == 3
    assert {"tm:UAS_transactions", "tm:inuse_transactions", "core:rss_bytes"} <= set(over_socket)
    assert over_socket["core:rss_bytes"] > 1_000_000


def test_relayed_request_counts_transactions_and_forwards(tmp_path):
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(3)
    script = tmp_path / "routes.py"
    script.write_text(
        "def route_request(ctx):\n"
        f"    return ctx.relay('sip:callee@127.0.0.1:{callee.getsockname()[1]}')\n")
    try:
        with mi_server(tmp_path, script=script) as (srv, _, port):
            client = SipClient(srv.address())
            client.send(options_request(f"127.0.0.1:{srv.address()[1]}",
                                        local=client.local_hostport))
            data, addr = callee.recvfrom(65535)
            from sipline.sip import make_response, parse_message

            callee.sendto(make_response(parse_message(data), 200, "OK", to_tag="t").to_bytes(),
                          addr)
            assert parse_message(client.recv()).status == 200
            client.close()
            stats = result(rpc_http(port, "get_statistics", [["core:", "tm:"]]))
    finally:
        callee.close()
    expected = {"core:rcv_requests": 1, "core:rcv_replies": 1, "core:fwd_requests": 1,
                "core:fwd_replies": 1, "tm:UAS_transactions": 1, "tm:UAC_transactions": 1,
                "tm:2xx_transactions": 1, "tm:4xx_transactions": 0,
                "core:drop_requests": 0, "core:bad_msg_hdr": 0}
    assert {k: stats[k] for k in expected} == expected
    assert stats["tm:inuse_transactions"] == 2  # both still in their Timer K/J wait


def test_bad_message_and_drops_are_counted(tmp_path):
    script = tmp_path / "routes.py"
    script.write_text("def route_request(ctx):\n    return ctx.drop()\n")
    with mi_server(tmp_path, script=script) as (srv, _, port):
        client = SipClient(srv.address())
        client.send(b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n")
        client.send(options_request(f"127.0.0.1:{srv.address()[1]}", local=client.local_hostport))
        while not client.expect_silence(0.3):
            pass  # the 400 for the unparsable one; the dropped one gets nothing
        client.close()
        stats = result(rpc_http(port, "get_statistics", [["core:bad_msg_hdr",
                                                          "core:drop_requests"]]))
    assert stats == {"core:bad_msg_hdr": 1, "core:drop_requests": 1}


def test_reset_and_list_statistics(tmp_path):
    with mi_server(tmp_path, [("acl", Acl())]) as (srv, _, port):
        client = SipClient(srv.address())
        msg = options_request(f"127.0.0.1:{srv.address()[1]}", local=client.local_hostport)
        assert client.request(msg).status == 200
        reset = result(rpc_http(port, "reset_statistics", ["core:"]))
        assert "core:rcv_requests" in reset["statistics"]
        assert "core:rss_bytes" not in reset["statistics"]  # a gauge
        assert result(rpc_http(port, "get_statistics", ["core:rcv_requests"])) == {
            "core:rcv_requests": 0}
        listed = result(rpc_http(port, "list_statistics"))
        client.close()
    by_name = {row["name"]: row for row in listed}
    assert by_name["acl:hits"] == {"name": "acl:hits", "kind": "counter", "plugin": "acl",
                                   "help": "requests checked"}
    assert by_name["tm:inuse_transactions"]["kind"] == "gauge"


def test_unknown_statistic_is_invalid_params(tmp_path):
    with mi_server(tmp_path) as (_, _, port):
        answer = rpc_http(port, "get_statistics", ["nosuch:"])
        assert answer["error"]["code"] == -32602
        assert "no statistics group 'nosuch'" in answer["error"]["message"]
        assert rpc_http(port, "get_statistics")["error"]["code"] == -32602  # required


def test_metrics_endpoint(tmp_path):
    with mi_server(tmp_path, [("acl", Acl())]) as (srv, _, port):
        client = SipClient(srv.address())
        msg = options_request(f"127.0.0.1:{srv.address()[1]}", local=client.local_hostport)
        assert client.request(msg).status == 200
        client.close()
        status, headers, body = http_request(port, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = {s.name: s.value for f in text_string_to_metric_families(body.decode())
               for s in f.samples}
    assert samples["sipline_core_rcv_requests_total"] == 1.0
    assert samples["sipline_acl_hits_total"] == 1.0
    assert samples["sipline_acl_rules"] == 12.0


# ----------------------------------------------------------------------- commands
def test_which_ps_uptime_version_mem(tmp_path):
    with mi_server(tmp_path, [("acl", Acl())]) as (_, _, port):
        which = result(rpc_http(port, "which"))
        one = result(rpc_http(port, "which", {"command": "acl_reload"}))
        ps = result(rpc_http(port, "ps"))
        uptime = result(rpc_http(port, "core:uptime"))
        version = result(rpc_http(port, "version"))
        mem = result(rpc_http(port, "mem"))
        reloaded = result(rpc_http(port, "acl_reload", ["rules"]))
        shutdown = rpc_http(port, "shutdown")
    names = {row["name"]: row for row in which}
    assert {"core:ps", "statistics:get", "core:reload_routes", "acl:reload"} <= set(names)
    assert names["statistics:get"]["alias"] == "get_statistics"
    assert one == {"name": "acl:reload", "alias": "acl_reload", "help": "reload the rules",
                   "plugin": "acl",
                   "params": [{"name": "table", "type": "string", "required": False}]}
    [proc] = ps["Processes"]
    assert proc["PID"] == os.getpid() and "MI" in proc["Type"]
    assert 0 <= uptime["uptime"] < 60
    assert version["server"].startswith("sipline ") and version["plugins"] == "acl ?"
    assert mem["rss_bytes"] > 0 and mem["transactions"] == 0 and mem["workers"] == 1
    assert reloaded == {"reloaded": "rules"}
    assert shutdown["error"]["code"] == -32601  # by design: use signals


def test_log_level_get_and_set(tmp_path):
    logging.getLogger("sipline.acl")  # the plugin's logger exists once it logged
    try:
        with mi_server(tmp_path) as (_, _, port):
            before = result(rpc_http(port, "log_level"))
            assert before[0]["logger"] == "sipline"
            changed = result(rpc_http(port, "log_level", {"level": "debug", "logger": "acl"}))
            assert changed[0]["logger"] == "sipline.acl" and changed[0]["level"] == "debug"
            assert logging.getLogger("sipline.acl").level == logging.DEBUG
            assert result(rpc_http(port, "log_level", {"logger": "acl"}))[0]["level"] == "debug"
            bad = rpc_http(port, "log_level", ["loud"])
            assert bad["error"]["code"] == -32602 and "debug, info" in bad["error"]["message"]
    finally:
        logging.getLogger("sipline.acl").setLevel(logging.NOTSET)


def test_reload_routes_swaps_and_refuses_a_broken_script(tmp_path):
    script = tmp_path / "routes.py"
    script.write_text("def route_request(ctx):\n    return ctx.reply(486, 'Busy One')\n")
    with mi_server(tmp_path, script=script) as (srv, _, port):
        client = SipClient(srv.address())

        def ask() -> str:
            msg = options_request(f"127.0.0.1:{srv.address()[1]}", local=client.local_hostport)
            return client.request(msg).reason

        assert ask() == "Busy One"
        script.write_text("def route_request(ctx):\n    return ctx.reply(486, 'Busy Two')\n")
        assert result(rpc_http(port, "reload_routes"))["reloaded"] == str(script)
        assert ask() == "Busy Two"
        script.write_text("def route_request(ctx:\n    return None\n")
        answer = rpc_http(port, "reload_routes")
        assert answer["error"]["code"] == -32000
        message = answer["error"]["message"]
        assert "previous one stays active" in message and "syntax error" in message
        assert f"{script}:1" in message
        assert ask() == "Busy Two"
        client.close()


def test_reload_routes_without_a_script(tmp_path):
    with mi_server(tmp_path) as (_, _, port):
        answer = rpc_http(port, "reload_routes")
    assert answer["error"]["code"] == -32000
    assert "no routing script is configured" in answer["error"]["message"]


# ----------------------------------------------------------------------- HTTP
def test_token_protects_both_paths(tmp_path):
    with mi_server(tmp_path, mi={"token": TOKEN}) as (_, _, port):
        status, headers, _ = http_request(port, "POST", "/mi", b"{}")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert http_request(port, "GET", "/metrics")[0] == 401
        assert http_request(port, "GET", "/metrics",
                            headers={"Authorization": "Bearer wrong"})[0] == 401
        assert result(rpc_http(port, "version", token=TOKEN))["server"].startswith("sipline")
        assert http_request(port, "GET", "/metrics",
                            headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # the socket (0600) needs no token
        sock = SocketRpc(tmp_path / "mi.sock")
        assert "result" in sock.call("uptime")
        sock.close()


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("data, status", [
    (b"GET /nowhere HTTP/1.1\r\n\r\n", 404),
    (b"GET /mi HTTP/1.1\r\n\r\n", 405),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"POST /mi HTTP/1.1\r\n\r\n", 411),
    (b"POST /mi HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /mi HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"POST /mi HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"BROKEN\r\n\r\n", 400),
    (b"GET /mi SIP/2.0\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
])
def test_http_errors(tmp_path, data, status):
    with mi_server(tmp_path) as (_, _, port):
        answer = raw_http(port, data)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"Connection: close" in answer


def test_http_keep_alive_and_notification(tmp_path):
    with mi_server(tmp_path) as (_, _, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        bodies = [b'{"jsonrpc":"2.0","method":"uptime","id":1}',
                  b'{"jsonrpc":"2.0","method":"uptime"}',
                  b'{"jsonrpc":"2.0","method":"version","id":2}']
        answers = []
        for body in bodies:
            conn.request("POST", "/mi", body=body)
            reply = conn.getresponse()
            answers.append((reply.status, reply.read()))
        conn.close()
    assert answers[0][0] == 200 and answers[2][0] == 200
    assert answers[1] == (204, b"")
    assert json.loads(answers[2][1])["id"] == 2


# ----------------------------------------------------------------------- socket
def test_socket_mode_lines_batches_and_notifications(tmp_path):
    with mi_server(tmp_path) as (_, _, _):
        path = tmp_path / "mi.sock"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        sock = SocketRpc(path)
        sock.send(b'{"jsonrpc":"2.0","method":"uptime"}\n'  # notification: no line
                  b"\n"
                  b'[{"jsonrpc":"2.0","method":"version","id":1},{"jsonrpc":"2.0","method":"x","id":2}]\n'
                  b"{oops\n")
        batch = json.loads(sock.file.readline())
        assert [a["id"] for a in batch] == [1, 2] and batch[1]["error"]["code"] == -32601
        assert sock.line()["error"]["code"] == -32700
        sock.send(b"x" * (MAX_LINE + 10))
        assert sock.line()["error"]["code"] == -32600
        sock.close()
    assert not path.exists()  # removed at stop


def test_stale_socket_is_replaced_and_a_live_one_refused(tmp_path):
    path = tmp_path / "mi.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed server's leftover
    with mi_server(tmp_path) as (_, interface, _):
        assert interface.unix is not None
        with pytest.raises(StartupError, match="another process serves MI"):
            with mi_server(tmp_path, mi={"http": False}):
                pass


def test_long_socket_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with mi_server(tmp_path, mi={"socket": str(deep / "mi.sock")}):
        sock = SocketRpc(deep / "mi.sock")
        assert "result" in sock.call("ps")
        sock.close()


def test_http_port_in_use_default_warns_explicit_fails(tmp_path, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = f"127.0.0.1:{taken.getsockname()[1]}"
    try:
        with pytest.raises(StartupError, match=f"cannot listen for MI on http {busy}"):
            with mi_server(tmp_path, mi={"http": busy}):
                pass
        # The built-in default address is only a warning: SIP service goes on.
        from sipline.config import MIConfig

        with inprocess_server({"mi": {"socket": False}}) as srv:
            as_default = MIConfig.model_construct(_fields_set={"socket"}, http=busy,
                                                  socket=False, token=None)
            srv.server.config = srv.server.config.model_copy(update={"mi": as_default})
            interface = ManagementInterface(srv.server)
            with caplog.at_level(logging.WARNING, logger="sipline.mi"):
                srv.call(interface.start())
            assert interface.http is None and interface.unix is None
            srv.call(interface.stop())
        assert f"cannot listen for MI on http {busy}" in caplog.text
    finally:
        taken.close()
