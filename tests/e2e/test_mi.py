"""The management interface of a real ``sipline run``: HTTP, the UNIX socket, /metrics,
``sipline mi``, statistics under sipp traffic, reload_routes under load, several workers."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sipline.mi.unix import reachable_path
from sipline.testing import ServerProcess, SipClient, free_port, options_request
from test_proxy_sipp import Sipp

LOOPBACK = "127.0.0.1"
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")


class Running:
    """One sipline process with its SIP port, MI HTTP port and MI socket."""

    def __init__(self, tmp_path: Path, *, plugins: tuple[str, ...] = (), script: str | None = None,
                 workers: int = 1, server_extra: str = "") -> None:
        self.tmp = tmp_path
        self.port = free_port()
        self.mi_port = free_port()
        lines = [
            "[server]",
            f'listen = ["udp:{LOOPBACK}:{self.port}"]',
            f"plugins = {json.dumps(list(plugins))}",
            f"workers = {workers}",
            "timer_interval = 0.2",
            server_extra,
        ]
        if script is not None:
            (tmp_path / "routes.py").write_text(script)
            lines.append('script = "routes.py"')
        lines += ["[mi]", f'http = "{LOOPBACK}:{self.mi_port}"']
        self.config_text = "\n".join(lines) + "\n"
        self.proc = ServerProcess(self.config_text, tmp_path)
        self.socket = tmp_path / "data" / "sipline-mi.sock"  # the default: in the data dir

    def __enter__(self) -> Running:
        try:
            self.proc.start(probe=(LOOPBACK, self.port))
            self.wait_mi()
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stop() == 0, self.proc.log()

    def wait_mi(self, timeout: float = 15.0) -> None:
        """The MI binds after SIP (in worker 0 only): wait until both listeners answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.http("uptime")
                self.sock("uptime")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MI did not come up:\n{self.proc.log()}") from None
                time.sleep(0.05)

    # --- clients
    def http_raw(self, body: bytes, path: str = "/mi", method: str = "POST") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, self.mi_port, timeout=10)
        try:
            conn.request(method, path, body=body if method == "POST" else None)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def http(self, method: str, params: Any = None) -> dict:
        status, body = self.http_raw(_request(method, params))
        assert status == 200, body
        return json.loads(body)

    def sock_raw(self, line: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            with reachable_path(self.socket) as where:
                s.connect(where)
            s.sendall(line + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def sock(self, method: str, params: Any = None) -> dict:
        return json.loads(self.sock_raw(_request(method, params)))

    def stats(self, *names: str) -> dict[str, int]:
        answer = self.http("get_statistics", [list(names)])
        assert "result" in answer, answer
        return answer["result"]

    def metrics(self) -> dict[str, float]:
        status, body = self.http_raw(b"", "/metrics", "GET")
        assert status == 200
        return {s.name: s.value for f in text_string_to_metric_families(body.decode())
                for s in f.samples}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sipline", "mi", "-c", str(self.proc.config_path), *args],
            capture_output=True, text=True, timeout=60, env=self.proc.env)


def _request(method: str, params: Any = None, id: Any = 1) -> bytes:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        payload["params"] = params
    return json.dumps(payload).encode()


def send_options(port: int, count: int) -> None:
    """``count`` OPTIONS, each from its own socket (its own source port), each answered."""
    for _ in range(count):
        client = SipClient((LOOPBACK, port), timeout=5)
        try:
            msg = options_request(f"{LOOPBACK}:{port}", local=client.local_hostport)
            assert client.request(msg).status == 200
        finally:
            client.close()


# ------------------------------------------------------------------------ statistics
def test_get_statistics_over_http_and_socket(tmp_path):
    with Running(tmp_path, plugins=("registrar",)) as srv:
        over_http = srv.http("get_statistics", ["all"])["result"]
        over_socket = srv.sock("statistics:get", {"statistics": ["core:", "registrar:"]})["result"]
        assert over_http["core:rcv_requests"] >= 1  # the readiness probe
        assert "registrar:accepted_regs" in over_http and "tm:UAS_transactions" in over_http
        assert set(over_socket) < set(over_http)
        assert over_socket["registrar:accepted_regs"] == over_http["registrar:accepted_regs"] == 0
        assert os.stat(srv.socket).st_mode & 0o777 == 0o600
    assert not srv.socket.exists()


@needs_sipp
def test_ten_sipp_registers_counted_exactly_and_in_metrics(tmp_path):
    with Running(tmp_path, plugins=("registrar",)) as srv:
        before = srv.stats("registrar:accepted_regs", "core:rcv_requests")
        uac = Sipp(tmp_path, "reg", "uac_register.xml", free_port(), "-m", "10", "-r", "20",
                   "-timeout", "30s", f"{LOOPBACK}:{srv.port}")
        try:
            assert uac.wait(40) == 0, uac.report()
        finally:
            uac.stop()
        after = srv.stats("registrar:accepted_regs", "core:rcv_requests", "usrloc:contacts")
        assert after["registrar:accepted_regs"] == before["registrar:accepted_regs"] + 10
        assert after["core:rcv_requests"] >= before["core:rcv_requests"] + 10
        assert after["usrloc:contacts"] == 10
        exposed = srv.metrics()
        assert exposed["sipline_registrar_accepted_regs_total"] == after["registrar:accepted_regs"]
        assert exposed["sipline_usrloc_contacts"] == 10


# ------------------------------------------------------------------------ JSON-RPC errors
ERROR_CASES = [
    ("bad JSON", b'{"jsonrpc": "2.0", "method": ', -32700),
    ("wrong version", b'{"jsonrpc": "1.0", "method": "ps", "id": 1}', -32600),
    ("unknown method", b'{"jsonrpc": "2.0", "method": "no_such", "id": 1}', -32601),
    ("bad params", b'{"jsonrpc": "2.0", "method": "ul_show_contact", "params": [5], "id": 1}',
     -32602),
    ("internal", b'{"jsonrpc": "2.0", "method": "reload_routes", "id": 1}', -32000),
]


@pytest.mark.parametrize("transport", ["http", "socket"])
def test_jsonrpc_errors(tmp_path, transport):
    with Running(tmp_path, plugins=("registrar",)) as srv:
        def ask(body: bytes) -> Any:
            if transport == "http":
                status, data = srv.http_raw(body)
                assert status in (200, 204)
                return json.loads(data) if data else None
            data = srv.sock_raw(body)
            return json.loads(data) if data else None

        for why, body, code in ERROR_CASES:
            answer = ask(body)
            assert answer["error"]["code"] == code, (why, answer)
            assert answer["error"]["message"], why
        batch = ask(b'[{"jsonrpc": "2.0", "method": "uptime", "id": 1},'
                    b' {"jsonrpc": "2.0", "method": "uptime"},'
                    b' {"jsonrpc": "2.0", "method": "nope", "id": 2},'
                    b' {"jsonrpc": "2.0", "method": "ul_show_contact", "params": {}, "id": 3},'
                    b' {"jsonrpc": "2.0", "method": "ul_show_contact", "params": ["a@b"], "id": 4},'
                    b' "junk"]')
        by_id = {a["id"]: a for a in batch}
        assert len(batch) == 5
        assert "uptime" in by_id[1]["result"]
        assert by_id[2]["error"]["code"] == -32601
        assert by_id[3]["error"]["code"] == -32602
        assert by_id[4]["result"] == []
        assert by_id[None]["error"]["code"] == -32600
        if transport == "http":
            assert srv.http_raw(b'{"jsonrpc": "2.0", "method": "uptime"}') == (204, b"")


# ------------------------------------------------------------------------ reload_routes
ROUTES = """
def route_request(ctx):
    if ctx.msg.method != "INVITE" or ctx.has_to_tag():
        return None
    ctx.record_route()
    ctx.add_header("X-Script", "{version}")
    return ctx.relay("sip:callee@127.0.0.1:{uas}")
"""


@needs_sipp
def test_reload_routes_under_load_and_a_broken_script(tmp_path):
    calls = 60
    uas = Sipp(tmp_path, "uas", "uas_answer.xml", free_port(), "-m", str(calls),
               "-timeout", "40s").wait_bound()
    try:
        with Running(tmp_path, script=ROUTES.format(version="v1", uas=uas.port)) as srv:
            uac = Sipp(tmp_path, "uac", "uac_call.xml", free_port(), "-m", str(calls),
                       "-r", "20", "-s", "callee", "-timeout", "40s", f"{LOOPBACK}:{srv.port}")
            try:
                time.sleep(0.4)
                for version in ("v2", "v3", "v4"):
                    (tmp_path / "routes.py").write_text(ROUTES.format(version=version,
                                                                      uas=uas.port))
                    answer = srv.http("reload_routes")
                    assert answer["result"]["reloaded"].endswith("routes.py"), answer
                    time.sleep(0.5)
                (tmp_path / "routes.py").write_text("def route_request(ctx:\n    pass\n")
                refused = srv.sock("reload_routes")
                assert refused["error"]["code"] == -32000
                assert "syntax error" in refused["error"]["message"]
                assert "previous one stays active" in refused["error"]["message"]
                assert uac.wait(60) == 0, uac.report() + srv.proc.log()[-3000:]
                assert uas.wait(30) == 0, uas.report()
                counted = uac.counters()
                assert counted["SuccessfulCall"] == calls and counted["FailedCall"] == 0
                stats = srv.stats("tm:", "core:fwd_requests")
            finally:
                uac.stop()
    finally:
        uas.stop()
    versions = [t.msg.get("X-Script") for t in uas.trace()
                if not t.sent and t.is_request and t.msg.method == "INVITE"]
    assert len(versions) == calls
    assert versions[0] == "v1" and versions[-1] == "v4"  # the broken one never ran
    assert versions == sorted(versions), "each reload took effect for the calls after it"
    assert stats["tm:UAC_transactions"] >= calls * 2  # INVITE and BYE legs
    assert stats["tm:2xx_transactions"] >= calls * 2
    assert stats["tm:4xx_transactions"] == stats["tm:5xx_transactions"] == 0


# ------------------------------------------------------------------------ the CLI client
def test_sipline_mi_tables_and_json(tmp_path):
    with Running(tmp_path, plugins=("registrar",)) as srv:
        ps = srv.cli("ps")
        assert ps.returncode == 0, ps.stderr
        header, row = ps.stdout.splitlines()
        assert header.split() == ["ID", "PID", "TYPE", "UPTIME", "MESSAGES"]
        assert row.split()[1] == str(srv.proc.proc.pid)

        stats = srv.cli("get_statistics", "core:")
        assert stats.returncode == 0, stats.stderr
        lines = dict(line.split() for line in stats.stdout.splitlines())
        assert int(lines["core:rcv_requests"]) >= 1 and "core:bad_msg_hdr" in lines

        as_json = srv.cli("--json", "get_statistics", "core:", "tm:")
        assert as_json.returncode == 0
        values = json.loads(as_json.stdout)
        assert values["tm:inuse_transactions"] >= 0 and "core:fwd_requests" in values

        added = srv.cli("ul_add", "alice@127.0.0.1", "sip:alice@127.0.0.1:5999", "600")
        assert added.returncode == 0, added.stderr
        shown = srv.cli("--json", "ul_show_contact", "aor=alice@127.0.0.1")
        assert json.loads(shown.stdout)[0]["contact"] == "sip:alice@127.0.0.1:5999"

        wrong = srv.cli("ul_add", "alice@127.0.0.1", "sip:alice@127.0.0.1:5999", "soon")
        assert wrong.returncode == 1 and "-32602" in wrong.stderr
    gone = subprocess.run([sys.executable, "-m", "sipline", "mi", "-c",
                           str(srv.proc.config_path), "ps"],
                          capture_output=True, text=True, timeout=60, env=srv.proc.env)
    assert gone.returncode == 5 and "cannot reach" in gone.stderr


# ------------------------------------------------------------------------ workers
def test_two_workers_count_exactly(tmp_path):
    n = 60
    with Running(tmp_path, plugins=("registrar",), workers=2) as srv:
        procs = srv.http("ps")["result"]["Processes"]
        assert [p["ID"] for p in procs] == [0, 1, 2]
        assert procs[0]["PID"] == srv.proc.proc.pid and "supervisor" in procs[0]["Type"]
        assert "MI" in procs[1]["Type"] and "MI" not in procs[2]["Type"]
        assert len({p["PID"] for p in procs}) == 3

        before = srv.stats("core:rcv_requests", "registrar:accepted_regs")
        send_options(srv.port, n)
        for i in range(n):  # REGISTERs, each from its own port: both workers take some
            client = SipClient((LOOPBACK, srv.port), timeout=5)
            try:
                answer = client.request(_register(srv.port, client, i))
                assert answer.status == 200, answer
            finally:
                client.close()
        after = srv.stats("core:rcv_requests")
        assert after["core:rcv_requests"] == before["core:rcv_requests"] + 2 * n
        per_worker = [p["Messages"] for p in srv.http("ps")["result"]["Processes"][1:]]
        assert all(count > 0 for count in per_worker), per_worker  # both took a share
        assert sum(per_worker) == after["core:rcv_requests"]
        # The registrar counts in each worker's own object; each worker publishes its
        # count every timer tick (0.2 s here): the sum converges to the exact total.
        deadline = time.monotonic() + 5
        while True:
            regs = srv.stats("registrar:accepted_regs")["registrar:accepted_regs"]
            if regs == before["registrar:accepted_regs"] + n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert regs == before["registrar:accepted_regs"] + n
        assert srv.metrics()["sipline_core_rcv_requests_total"] >= after["core:rcv_requests"]


def _register(port: int, client: SipClient, i: int) -> bytes:
    target = f"{LOOPBACK}:{port}"
    return (
        f"REGISTER sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK-w{i}-{time.time_ns()}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:u{i}@{target}>;tag=t{i}\r\n"
        f"To: <sip:u{i}@{target}>\r\n"
        f"Call-ID: w{i}-{time.time_ns()}\r\n"
        f"CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:u{i}@{client.local_hostport}>\r\n"
        f"Expires: 300\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
