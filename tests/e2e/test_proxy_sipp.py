"""Acceptance tests of the stateful proxy: sipp callers and callees around a real sipline.

Every test runs ``sipline run`` as a subprocess with a routing script written
for it (the callees' ports filled in) and sipp peers on free loopback ports,
all stopped by PID. What is asserted comes from sipp itself (its exit code, the
``check_it`` regular expressions of the scenarios in ``scenarios/``, its
statistics file) and from its message trace, read back here to look at the
exact headers that went over the wire.

The last test runs the server in-process instead, because the transaction
table is not visible from outside (no MI yet).
"""

from __future__ import annotations

import csv
import errno
import re
import select
import shutil
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipline.hooks import hookimpl
from sipline.sip import parse_message
from sipline.testing import (
    ServerProcess,
    SipClient,
    free_port,
    inprocess_server,
    options_request,
)

SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")


# --------------------------------------------------------------------------- sipp peers
class Sipp:
    """One sipp process (UAC or UAS) with its message trace, error log and statistics."""

    def __init__(self, workdir: Path, name: str, scenario: str, port: int, *args: str):
        self.name = name
        self.port = port
        self.messages = workdir / f"{name}_messages.log"
        self.errors = workdir / f"{name}_errors.log"
        self.stats = workdir / f"{name}_stats.csv"
        self.out = workdir / f"{name}.out"
        self.cmd = [
            "sipp", "-sf", str(SCENARIOS / scenario),
            "-i", LOOPBACK, "-p", str(port),
            "-nostdin", "-timeout_error",
            "-trace_msg", "-message_file", str(self.messages),
            "-trace_err", "-error_file", str(self.errors),
            "-trace_stat", "-stf", str(self.stats),
            *args,
        ]
        self._out = open(self.out, "wb")
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=workdir,
        )

    def wait_bound(self, timeout: float = 5.0) -> Sipp:
        """Wait until sipp listens on its UDP port (binding it ourselves fails then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.report()}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((LOOPBACK, self.port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        return self
                    raise
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not bind {self.port} within {timeout}s")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} still running after {timeout}s\n{self.report()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # by PID: only the process this object started
            self.proc.wait(5)
        self._out.close()

    def read(self, path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def report(self) -> str:
        errors = self.read(self.errors)
        return (
            f"--- {self.name}: {' '.join(self.cmd)}\n"
            f"--- errors:\n{errors[-4000:]}\n--- screen:\n{self.read(self.out)[-3000:]}"
        )

    def counters(self) -> dict[str, int]:
        """The cumulative counters of the last line of sipp's statistics file."""
        rows = list(csv.reader(self.read(self.stats).splitlines(), delimiter=";"))
        if len(rows) < 2:
            return {}
        out = {}
        for key, value in zip(rows[0], rows[-1]):
            if key.endswith("(C)") and value.strip().isdigit():
                out[key[:-3]] = int(value)
        return out

    def trace(self) -> list[Traced]:
        return parse_trace(self.read(self.messages))


@dataclass
class Traced:
    """One message of a sipp message trace."""

    sent: bool
    at: float  # seconds since the epoch
    msg: Any  # sipline.sip Request or Response
    lost: bool  # a received message that sipp's -lost then dropped

    @property
    def is_request(self) -> bool:
        return hasattr(self.msg, "method")

    def method(self) -> str:
        return self.msg.method if self.is_request else self.msg.cseq.method


# sipp starts each entry with a dashed line and a time stamp. Its notes about
# -lost have no newline, so a separator may start mid-line: "lost (recv)"
# follows the received message it dropped, "voluntary lost (while sending)"
# stands alone (a message lost while sending is not logged).
_TRACE_SEP = re.compile(r"-{20,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d)(?:\.(\d+))?[^\n]*\n")
_LOST_NOTE = re.compile(r"(UDP message (voluntary )?lost[^\n]*?)+$")


def parse_trace(text: str) -> list[Traced]:
    """Split sipp's ``-trace_msg`` log into messages; parse each with sipline's parser."""
    out: list[Traced] = []
    marks = list(_TRACE_SEP.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        block = text[mark.end():end].rstrip("\r\n")
        note = _LOST_NOTE.search(block)
        if note is not None:
            block = block[:note.start()]
        first, _, rest = block.lstrip("\r\n").partition("\n")
        if "message sent" in first:
            sent = True
        elif "message received" in first:
            sent = False
        else:
            continue  # sipp's own notes (aborted calls...)
        lost = note is not None and "(recv)" in note.group(0)
        # sipp may log with bare LF: restore CRLF for the parser
        data = re.sub(r"\r?\n", "\r\n", rest.strip("\r\n") + "\n\n").encode("latin-1", "replace")
        stamp = time.mktime(time.strptime(f"{mark.group(1)} {mark.group(2)}", "%Y-%m-%d %H:%M:%S"))
        stamp += float(f"0.{mark.group(3)}") if mark.group(3) else 0.0
        out.append(Traced(sent, stamp, parse_message(data), lost))
    return out


# ------------------------------------------------------------------------- the fixture
class Net:
    """The pieces of one test: sipline, its routing script, sipp peers; cleaned up by PID."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.port = free_port()
        self.server: ServerProcess | None = None
        self.peers: list[Sipp] = []

    @property
    def addr(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def hostport(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start_sipline(self, script: str, proxy: str = "") -> ServerProcess:
        (self.tmp / "routes.py").write_text(script)
        config = f"""
[server]
listen = ["udp:{LOOPBACK}:{self.port}"]
script = "routes.py"
log_level = "info"

[proxy]
{proxy}
"""
        server = ServerProcess(config, self.tmp)
        try:
            server.start(probe=self.addr)
        except BaseException:
            server.stop()
            raise
        self.server = server
        return server

    def uas(self, name: str, scenario: str, calls: int, *args: str) -> Sipp:
        peer = Sipp(self.tmp, name, scenario, free_port(),
                    "-m", str(calls), "-timeout", "30s", *args)
        self.peers.append(peer)
        return peer.wait_bound()

    def uac(self, name: str, scenario: str, calls: int, *args: str, rate: int = 10) -> Sipp:
        peer = Sipp(self.tmp, name, scenario, free_port(),
                    "-m", str(calls), "-r", str(rate), "-s", "callee",
                    "-timeout", "40s", *args, self.hostport)
        self.peers.append(peer)
        return peer

    def finish(self, *peers: Sipp, timeout: float = 30.0) -> None:
        """Wait for every peer; fail with all their logs unless each one exited 0."""
        codes = {p.name: p.wait(timeout) for p in peers}
        if any(codes.values()):
            logs = "\n".join(p.report() for p in peers)
            server = self.server.log()[-4000:] if self.server else ""
            raise AssertionError(f"sipp exit codes {codes}\n{logs}\n--- sipline:\n{server}")

    def close(self) -> None:
        for p in self.peers:
            p.stop()
        if self.server is not None:
            code = self.server.stop()
            assert code == 0, self.server.log()


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.close()


def top_via_sent_by(msg) -> str:
    via = msg.top_via
    return f"{via.host}:{via.port}"


def vias(msg) -> list:
    return list(msg.via)


SCRIPT_ONE_CALLEE = """
CALLEE = "sip:callee@127.0.0.1:{uas}"

def route_request(ctx):
    if ctx.msg.method != "INVITE" or ctx.has_to_tag():
        return None  # in-dialog requests and OPTIONS: the default script
    ctx.record_route()
    return ctx.relay(CALLEE)
"""


# --------------------------------------------------------------------------------- 1
def test_call_with_record_route_keeps_the_proxy_in_the_dialog(net):
    """INVITE/180/200/ACK/BYE: the 200 names sipline in Record-Route, and the
    caller's ACK and BYE reach the callee through sipline (its Via on top)."""
    uas = net.uas("uas", "uas_answer.xml", 2)
    net.start_sipline(SCRIPT_ONE_CALLEE.format(uas=uas.port))
    uac = net.uac("uac", "uac_call.xml", 2)
    net.finish(uac, uas)

    ours = f"<sip:{net.hostport};lr>"
    oks = [t.msg for t in uac.trace() if not t.sent and not t.is_request
           and t.msg.status == 200 and t.method() == "INVITE"]
    assert len(oks) == 2
    for ok in oks:
        assert ok.get_all("Record-Route") == [ours]
        assert len(vias(ok)) == 1, "sipline removed its own Via from the response"

    received = [t.msg for t in uas.trace() if not t.sent and t.is_request]
    by_method = defaultdict(list)
    for req in received:
        by_method[req.method].append(req)
    assert {m: len(v) for m, v in by_method.items()} == {"INVITE": 2, "ACK": 2, "BYE": 2}
    for req in received:
        assert top_via_sent_by(req) == net.hostport, req.method
        assert len(vias(req)) == 2, "sipline's Via above the caller's"
        assert req.top_via.branch.startswith("z9hG4bK")
        if req.method != "INVITE":
            # Route consumed by sipline: nothing left to route by, the R-URI is the Contact
            assert not req.has("Route")
            assert str(req.uri).startswith("sip:callee@127.0.0.1:")
    # the ACK of a 2xx is relayed (statelessly), Max-Forwards one less
    for ack in by_method["ACK"]:
        assert ack.max_forwards == 69


# --------------------------------------------------------------------------------- 2
def test_cancel_during_ringing(net):
    """The caller cancels while the callee rings: 200 for the CANCEL and 487 for
    the INVITE upstream; the callee gets the CANCEL and exactly one ACK, sipline's
    own for its 487 (the caller's ACK is absorbed by sipline's server transaction)."""
    uas = net.uas("uas", "uas_ring_cancel.xml", 1)
    net.start_sipline(SCRIPT_ONE_CALLEE.format(uas=uas.port))
    uac = net.uac("uac", "uac_cancel.xml", 1)
    net.finish(uac, uas)

    caller = [t.msg for t in uac.trace() if not t.sent and not t.is_request]
    finals = [(r.status, r.cseq.method) for r in caller if r.status >= 200]
    assert finals == [(200, "CANCEL"), (487, "INVITE")]

    received = [t.msg for t in uas.trace() if not t.sent and t.is_request]
    assert [r.method for r in received] == ["INVITE", "CANCEL", "ACK"]
    invite, cancel, ack = received
    ours = invite.top_via.branch
    assert top_via_sent_by(cancel) == net.hostport and cancel.top_via.branch == ours
    assert len(vias(ack)) == 1 and top_via_sent_by(ack) == net.hostport
    assert ack.top_via.branch == ours, "the hop-by-hop ACK belongs to sipline's INVITE transaction"


# --------------------------------------------------------------------------------- 3
def test_unanswered_invite_times_out_with_408_and_a_cancel(net):
    """A callee that rings forever: after [proxy] fr_inv_timeout (Timer C, 2 s) the
    caller gets 408 and the callee gets a CANCEL (then sipline ACKs its 487)."""
    uas = net.uas("uas", "uas_ring_cancel.xml", 1)
    net.start_sipline(SCRIPT_ONE_CALLEE.format(uas=uas.port), proxy="fr_inv_timeout = 2.0")
    uac = net.uac("uac", "uac_no_answer.xml", 1)
    net.finish(uac, uas)

    trace = uac.trace()
    ringing = next(t.at for t in trace if not t.sent and not t.is_request and t.msg.status == 180)
    timeout = next(t for t in trace if not t.sent and not t.is_request and t.msg.status >= 200)
    assert timeout.msg.status == 408
    assert 1.7 <= timeout.at - ringing <= 4.0, timeout.at - ringing

    received = [t for t in uas.trace() if not t.sent and t.is_request]
    assert [t.msg.method for t in received] == ["INVITE", "CANCEL", "ACK"]
    assert top_via_sent_by(received[1].msg) == net.hostport


# --------------------------------------------------------------------------------- 4
SCRIPT_SERIAL = """
FIRST = "sip:first@127.0.0.1:{first}"
SECOND = "sip:second@127.0.0.1:{second}"

def next_hop(fctx):
    if fctx.response.status == 503 and not fctx.request.vars.get("retried"):
        fctx.request.vars["retried"] = True
        return fctx.relay(SECOND)
    return None

def route_request(ctx):
    if ctx.msg.method != "INVITE" or ctx.has_to_tag():
        return None
    ctx.record_route()
    {arm}
    return ctx.relay(FIRST)

{hook}
"""


@pytest.mark.parametrize("how", ["on_failure", "route_failure"])
def test_serial_forking_from_the_failure_handler(net, how):
    """The first callee answers 503; the failure handler (``ctx.on_failure`` or the
    script's ``route_failure``) relays to a second one, and the call completes there."""
    first = net.uas("first", "uas_reject.xml", 1)
    second = net.uas("second", "uas_answer.xml", 1)
    if how == "on_failure":
        arm, hook = "ctx.on_failure(next_hop)", ""
    else:
        arm, hook = "", "def route_failure(ctx):\n    return next_hop(ctx)\n"
    net.start_sipline(SCRIPT_SERIAL.format(first=first.port, second=second.port, arm=arm, hook=hook))
    uac = net.uac("uac", "uac_call.xml", 1)
    net.finish(uac, first, second)

    caller = [t.msg for t in uac.trace() if not t.sent and not t.is_request]
    assert [r.status for r in caller if r.status >= 200] == [200, 200]  # INVITE, BYE
    assert all(r.status != 503 for r in caller)
    at_first = [t.msg.method for t in first.trace() if not t.sent and t.is_request]
    assert at_first == ["INVITE", "ACK"]
    at_second = [t.msg for t in second.trace() if not t.sent and t.is_request]
    assert [r.method for r in at_second] == ["INVITE", "ACK", "BYE"]
    assert all(top_via_sent_by(r) == net.hostport for r in at_second)


# --------------------------------------------------------------------------------- 5
SCRIPT_PARALLEL = """
def route_request(ctx):
    if ctx.msg.method != "INVITE" or ctx.has_to_tag():
        return None
    ctx.record_route()
    return ctx.relay("sip:fast@127.0.0.1:{fast}", "sip:ringer@127.0.0.1:{ringer}")
"""


def test_parallel_forking_cancels_the_losing_branch(net):
    """Two callees at once: one answers 200 (after 300 ms), the other rings and
    gets a CANCEL; the caller sees exactly one 200, from the one that answered."""
    fast = net.uas("fast", "uas_answer.xml", 1, "-d", "300")
    ringer = net.uas("ringer", "uas_ring_cancel.xml", 1)
    net.start_sipline(SCRIPT_PARALLEL.format(fast=fast.port, ringer=ringer.port))
    uac = net.uac("uac", "uac_call.xml", 1)
    net.finish(uac, fast, ringer)

    oks = [t.msg for t in uac.trace() if not t.sent and not t.is_request
           and t.msg.status == 200 and t.method() == "INVITE"]
    assert len(oks) == 1
    answered = [t.msg for t in fast.trace() if t.sent and not t.is_request and t.msg.status == 200]
    assert oks[0].to.tag == answered[0].to.tag
    assert not [t for t in uac.trace() if not t.sent and not t.is_request and t.msg.status == 487]

    at_ringer = [t.msg for t in ringer.trace() if not t.sent and t.is_request]
    assert [r.method for r in at_ringer] == ["INVITE", "CANCEL", "ACK"]
    reason = at_ringer[1].get("Reason")
    if reason is not None:
        assert "200" in reason
    at_fast = [t.msg.method for t in fast.trace() if not t.sent and t.is_request]
    assert at_fast == ["INVITE", "ACK", "BYE"]


# --------------------------------------------------------------------------------- 6
def _branches_per_call(trace: list[Traced], method: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for t in trace:
        if not t.sent and t.is_request and t.msg.method == method:
            out[t.msg.call_id].add(t.msg.top_via.branch)
    return out


@pytest.mark.slow
def test_lossy_network_every_call_completes_and_nothing_is_forwarded_twice(net):
    """10 % loss on both sides, 200 calls: every call completes (sipp's exit codes
    and counters), and every request the callee sees more than once is a
    retransmission of sipline's client transaction (same branch), never a
    second relay of a caller retransmission (new branch)."""
    calls = 200
    # Every element runs the same timers (T1 100 ms, T2 1 s; the scenarios' retrans="100"):
    # a caller retransmitting for longer than sipline's Timer J (64*T1) would see its
    # late BYE relayed as a new transaction, rightly. sipp may retransmit 10 times.
    lossy = ("-lost", "10", "-T2", "1000", "-max_invite_retrans", "10",
             "-max_non_invite_retrans", "10")
    uas = net.uas("uas", "uas_lossy.xml", calls, *lossy)
    net.start_sipline(SCRIPT_ONE_CALLEE.format(uas=uas.port), proxy="t1 = 0.1\nt2 = 1.0\nt4 = 1.0")
    uac = net.uac("uac", "uac_lossy.xml", calls, *lossy, "-l", "100", rate=100)
    net.finish(uac, uas, timeout=60)

    assert uac.counters().get("SuccessfulCall") == calls, uac.counters()
    assert uas.counters().get("SuccessfulCall") == calls, uas.counters()
    trace = uas.trace()
    assert any(t.lost for t in trace), "sipp -lost dropped nothing"
    invites = _branches_per_call(trace, "INVITE")
    byes = _branches_per_call(trace, "BYE")
    acks = _branches_per_call(trace, "ACK")  # relayed statelessly: a stable branch too
    assert len(invites) == len(byes) == calls
    for method, per_call in (("INVITE", invites), ("BYE", byes), ("ACK", acks)):
        twice = {cid: b for cid, b in per_call.items() if len(b) != 1}
        assert not twice, f"{method} relayed more than once: {twice}"
    # the loss was repaired by sipline's client transactions: same branch, seen again
    seen: dict[str, int] = defaultdict(int)
    for t in trace:
        if not t.sent and t.is_request and t.msg.method == "INVITE":
            seen[t.msg.call_id] += 1
    assert any(n > 1 for n in seen.values()), "no INVITE was retransmitted by sipline"


# --------------------------------------------------------------------------------- 7
SCRIPT_LOOP = """
REFLECTOR = "sip:127.0.0.1:{reflector}"

def route_request(ctx):
    user = getattr(ctx.msg.uri, "user", None)
    if user == "loop":
        return ctx.relay()  # the R-URI names sipline itself
    if user == "bounce":
        return ctx.relay(dst=REFLECTOR)  # a next hop that sends everything back
    return None
"""


def _invite(client: SipClient, ruri: str, max_forwards: int = 70) -> bytes:
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:tester@127.0.0.1>;tag=t{uuid.uuid4().hex[:6]}\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _ack(invite: bytes, response: Any) -> bytes:
    """The ACK of a non-2xx final response: the INVITE's Via, the response's To."""
    head = invite.split(b"\r\n\r\n")[0].decode().split("\r\n")
    ruri = head[0].split()[1]
    lines = [f"ACK {ruri} SIP/2.0"]
    for line in head[1:]:
        name = line.split(":", 1)[0].lower()
        if name in ("via", "from", "call-id", "max-forwards"):
            lines.append(line)
    lines += [f"To: {response.get('To')}", "CSeq: 1 ACK", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def _in_dialog_ack(client: SipClient, proxy: str, target_port: int, max_forwards: int) -> bytes:
    return (
        f"ACK sip:peer@127.0.0.1:{target_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
        f"Route: <sip:{proxy};lr>\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:tester@127.0.0.1>;tag=f{uuid.uuid4().hex[:6]}\r\n"
        f"To: <sip:peer@127.0.0.1>;tag=t{uuid.uuid4().hex[:6]}\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _drain(client: SipClient, window: float) -> list:
    """Every message that arrives within ``window`` seconds, parsed."""
    out = []
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(parse_message(client.recv(left)))
        except TimeoutError:
            break
    return out


def _final_then_ack(client: SipClient, invite: bytes, timeout: float = 3.0) -> list:
    """Send ``invite``; collect responses up to the final one, ACK it, then collect
    for one more second."""
    client.send(invite)
    got = []
    deadline = time.monotonic() + timeout
    while not got or got[-1].status < 200:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no final response, got {[r.status for r in got]}")
        got.append(parse_message(client.recv(left)))
    client.send(_ack(invite, got[-1]))
    return got + _drain(client, 1.0)


def test_max_forwards_and_loops_end_without_a_storm(net):
    """Max-Forwards 0 gets 483; a request that comes back to sipline unchanged (R-URI
    naming sipline, or a next hop that reflects it) gets 482 after one pass, with
    a handful of messages in all; OPTIONS is still answered afterwards."""
    reflector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reflector.bind((LOOPBACK, 0))
    reflector.settimeout(0.05)
    net.start_sipline(SCRIPT_LOOP.format(reflector=reflector.getsockname()[1]))
    client = SipClient(net.addr, timeout=2.0)
    try:
        # Max-Forwards: 0, answered before any routing (RFC 3261 section 16.3 step 3)
        msg = _invite(client, f"sip:loop@{net.hostport}", max_forwards=0)
        got = _final_then_ack(client, msg)
        assert [r.status for r in got] == [483]

        # the R-URI names sipline itself: relayed once, then detected (section 16.3 step 4)
        msg = _invite(client, f"sip:loop@{net.hostport}")
        got = _final_then_ack(client, msg)
        statuses = [r.status for r in got]
        # (sipline's own 100 only if the final took longer than [proxy] trying_delay)
        assert statuses[-1:] in ([482], [483]) and statuses[:-1] in ([], [100]), statuses

        # a next hop that sends everything back to sipline: reflect what it sends,
        # and ACK the final response as soon as it comes, for 1.5 s
        msg = _invite(client, f"sip:bounce@{net.hostport}")
        client.send(msg)
        reflected, got = [], []
        deadline = time.monotonic() + 1.5
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([reflector, client.sock], [], [], left)
            if reflector in readable:
                data, _ = reflector.recvfrom(65535)
                reflected.append(parse_message(data))
                reflector.sendto(data, net.addr)
            if client.sock in readable:
                got.append(parse_message(client.recv()))
                if got[-1].status >= 200:
                    client.send(_ack(msg, got[-1]))
        methods = [r.method for r in reflected]
        # one INVITE (no second pass, no storm), then sipline's ACK for the 482 it got back
        assert methods.count("INVITE") == 1, methods
        assert len(reflected) <= 3, methods
        statuses = [r.status for r in got]
        # (sipline's own 100 only if the final took longer than [proxy] trying_delay)
        assert statuses[-1:] in ([482], [483]) and statuses[:-1] in ([], [100]), statuses

        # an in-dialog ACK routed through sipline: relayed with Max-Forwards one less,
        # never relayed at Max-Forwards 0 (it cannot be answered: it is dropped)
        reflector.settimeout(0.5)
        for max_forwards, expected in ((1, ["0"]), (0, [])):
            client.send(_in_dialog_ack(client, net.hostport, reflector.getsockname()[1], max_forwards))
            seen = []
            try:
                while True:
                    data, _ = reflector.recvfrom(65535)
                    seen.append(parse_message(data).get("Max-Forwards").strip())
            except TimeoutError:
                pass
            assert seen == expected, (max_forwards, seen)

        # still responsive
        probe = options_request(net.hostport, local=client.local_hostport)
        assert client.request(probe).status == 200
    finally:
        client.close()
        reflector.close()


# ------------------------------------------------------------- in-process: txn table
class _OneCallee:
    def __init__(self, uri: str) -> None:
        self.uri = uri

    @hookimpl(tryfirst=True)
    def route_request(self, ctx):
        if ctx.msg.method != "INVITE" or ctx.has_to_tag():
            return None
        ctx.record_route()
        return ctx.relay(self.uri)


@pytest.mark.slow
def test_transaction_table_is_empty_after_a_load_run(tmp_path):
    """300 calls through an in-process server with short timers (T1 50 ms, T4 100 ms):
    once Timers L, M, J and K ran, no transaction is left in the table."""
    calls = 300
    net = Net(tmp_path)
    try:
        uas = net.uas("uas", "uas_answer.xml", calls)
        toml = {
            "server": {"listen": [f"udp:{LOOPBACK}:{net.port}"]},
            "proxy": {"t1": 0.05, "t2": 0.5, "t4": 0.1},
        }
        with inprocess_server(toml, script=_OneCallee(f"sip:callee@{LOOPBACK}:{uas.port}")) as srv:

            async def table_size() -> int:
                return len(srv.server.proxy.layer)

            uac = net.uac("uac", "uac_call.xml", calls, "-l", "100", rate=200)
            net.finish(uac, uas, timeout=60)
            assert uac.counters().get("SuccessfulCall") == calls
            assert srv.call(table_size()) > 0, "the last calls' transactions are still there"
            deadline = time.monotonic() + 64 * 0.05 + 5
            size = srv.call(table_size())
            while size and time.monotonic() < deadline:
                time.sleep(0.2)
                size = srv.call(table_size())
            assert size == 0, repr(srv.server.proxy.layer)
    finally:
        net.close()
