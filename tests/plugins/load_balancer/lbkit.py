"""Helpers of the load-balancer tests: raw UDP gateways that answer on their own (a thread
each), a raw UDP caller, routing scripts (imported by the test modules next to it:
``from lbkit import ...``)."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipline.routing.script import load_script
from sipline.sip import Request, Response, make_response, parse_message

LOOPBACK = "127.0.0.1"


class Gateway:
    """A destination behind the load balancer: a UDP socket whose thread answers.

    ``options``: the status it answers probes with (None: silent, as if it were down);
    ``invite``: the final status for an INVITE (after a 180), 200 with a Contact and the
    Record-Route copied; None: it rings until the INVITE is cancelled (then 487); 0: it
    does not answer at all. BYE gets 200, ACK nothing. ``invites`` lists the Call-IDs of
    the INVITEs it received, ``probes`` counts the probes.
    """

    def __init__(self, name: str, *, invite: int = 200, options: int | None = 200) -> None:
        self.name = name
        self.invite = invite
        self.options = options
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:{LOOPBACK}:{self.port}"
        self.invites: list[str] = []
        self.ringing: dict[str, tuple[Request, tuple[str, int]]] = {}
        self.byes: list[str] = []
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gateway-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                msg = parse_message(data)
            except Exception:  # noqa: BLE001, S112 - a test peer ignores what it cannot read
                continue
            method = getattr(msg, "method", None)
            if method is None:
                continue
            try:
                self._answer(msg, method, addr)
            except OSError:
                return

    def _answer(self, msg: Request, method: str, addr: tuple[str, int]) -> None:
        tag = f"{self.name}-{msg.call_id[:8]}"
        if method in ("OPTIONS", "INFO"):
            self.probes += 1
            if self.options is not None:
                self._send(make_response(msg, self.options, to_tag=tag), addr)
        elif method == "INVITE":
            if msg.to.tag:
                self._send(make_response(msg, 200, to_tag=msg.to.tag), addr)
                return
            if msg.call_id not in self.invites:
                self.invites.append(msg.call_id)
            status = self.invite
            if status == 0:
                return  # dead silent
            rr = [("Record-Route", v) for v in msg.get_all("Record-Route")]
            contact = [("Contact", f"<sip:{self.name}@{LOOPBACK}:{self.port}>")]
            self._send(make_response(msg, 180, to_tag=tag, headers=rr + contact), addr)
            if status is None:
                self.ringing[msg.call_id] = (msg, addr)
                return
            self._send(make_response(msg, status, to_tag=tag,
                                     headers=rr + contact if status < 300 else []), addr)
        elif method == "BYE":
            self.byes.append(msg.call_id)
            self._send(make_response(msg, 200), addr)
        elif method == "CANCEL":
            self._send(make_response(msg, 200), addr)
            pending = self.ringing.pop(msg.call_id, None)
            if pending is not None:
                self._send(make_response(pending[0], 487, to_tag=tag), pending[1])
        elif method != "ACK":
            self._send(make_response(msg, 200, to_tag=tag), addr)

    def _send(self, response: Response, addr: tuple[str, int]) -> None:
        self.sock.sendto(response.to_bytes(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Caller:
    """A UAC as a bare UDP socket: INVITE through the proxy, ACK, BYE."""

    def __init__(self, proxy: tuple[str, int]) -> None:
        self.proxy = proxy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.hostport = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.backlog: list[Any] = []

    def _recv(self, want: Callable[[Any], bool], timeout: float) -> Any:
        for i, msg in enumerate(self.backlog):
            if want(msg):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the proxy")
            self.sock.settimeout(left)
            data, _ = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if want(msg):
                return msg
            self.backlog.append(msg)

    def call(self, user: str = "12345", timeout: float = 5.0, domain: str | None = None) -> CallLeg:
        """Send an INVITE (to ``user@domain``, default the proxy's address) and wait for
        its final response (ACKed when 2xx)."""
        leg = CallLeg(self, user, domain)
        leg.final = self._request(leg.invite(), "INVITE", leg.callid, timeout)
        return self.finish(leg)

    def ringing(self, user: str = "12345", timeout: float = 5.0) -> CallLeg:
        """Send an INVITE and wait for its 180 (the call stays pending)."""
        leg = CallLeg(self, user)
        self.sock.sendto(leg.invite(), self.proxy)
        self._recv(lambda m: getattr(m, "status", 0) == 180 and m.call_id == leg.callid, timeout)
        return leg

    def cancel(self, leg: CallLeg, timeout: float = 5.0) -> CallLeg:
        """CANCEL a pending INVITE; waits for the INVITE's final response (487)."""
        self.sock.sendto(leg.cancel(), self.proxy)
        leg.final = self._recv(lambda m: getattr(m, "status", 0) >= 200 and m.call_id ==
                               leg.callid and m.cseq.method == "INVITE", timeout)
        return self.finish(leg)

    def finish(self, leg: CallLeg) -> CallLeg:
        assert leg.final is not None
        if leg.final.status < 300:
            leg.to_header = leg.final.get("To")
            leg.routes = list(reversed(leg.final.get_list("Record-Route")))
            contact = leg.final.get("Contact").strip()
            leg.remote = contact[1:contact.index(">")] if contact.startswith("<") else contact
            self.sock.sendto(leg.in_dialog("ACK", 1), self.proxy)
        return leg

    def _request(self, data: bytes, method: str, callid: str, timeout: float) -> Response:
        self.sock.sendto(data, self.proxy)
        return self._recv(lambda m: getattr(m, "status", 0) >= 200 and m.call_id == callid
                          and m.cseq.method == method, timeout)

    def close(self) -> None:
        self.sock.close()


class CallLeg:
    """One call of a :class:`Caller`."""

    def __init__(self, caller: Caller, user: str, domain: str | None = None) -> None:
        self.caller = caller
        self.user = user
        self.domain = domain or "{}:{}".format(*caller.proxy)
        self.callid = f"{uuid.uuid4().hex}@lbtest"
        self.from_tag = uuid.uuid4().hex[:8]
        self.final: Response | None = None
        self.branch = ""
        self.to_header = ""
        self.routes: list[str] = []
        self.remote = ""

    @property
    def status(self) -> int:
        assert self.final is not None
        return self.final.status

    def _headers(self, method: str, cseq: int, to: str, branch: str | None = None) -> str:
        host = self.caller.proxy[0]
        branch = branch or f"z9hG4bK{uuid.uuid4().hex[:12]}"
        return (
            f"Via: SIP/2.0/UDP {self.caller.hostport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:alice@{host}>;tag={self.from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.callid}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:alice@{self.caller.hostport}>\r\n"
        )

    def invite(self) -> bytes:
        ruri = f"sip:{self.user}@{self.domain}"
        self.branch = f"z9hG4bK{uuid.uuid4().hex[:12]}"
        return (f"INVITE {ruri} SIP/2.0\r\n" + self._headers("INVITE", 1, f"<{ruri}>", self.branch)
                + "Content-Length: 0\r\n\r\n").encode()

    def cancel(self) -> bytes:
        ruri = f"sip:{self.user}@{self.domain}"
        return (f"CANCEL {ruri} SIP/2.0\r\n" + self._headers("CANCEL", 1, f"<{ruri}>", self.branch)
                + "Content-Length: 0\r\n\r\n").encode()

    def in_dialog(self, method: str, cseq: int) -> bytes:
        routes = "".join(f"Route: {r}\r\n" for r in self.routes)
        return (f"{method} {self.remote} SIP/2.0\r\n" + routes
                + self._headers(method, cseq, self.to_header)
                + "Content-Length: 0\r\n\r\n").encode()

    def bye(self, timeout: float = 5.0) -> int:
        """End the call; returns the BYE's final status."""
        return self.caller._request(self.in_dialog("BYE", 2), "BYE", self.callid, timeout).status


def script(tmp_path: Path, body: str) -> Any:
    """A routing script module from ``body`` (dedented), loaded as sipline loads one."""
    path = tmp_path / f"routes_{uuid.uuid4().hex[:6]}.py"
    path.write_text(textwrap.dedent(body))
    return load_script(path)


LB_SCRIPT = '''
def route_request(ctx):
    msg = ctx.msg
    if ctx.has_to_tag():
        return None  # in-dialog: matched by the dialog plugin, relayed by the default script
    if msg.method != "INVITE":
        return None
    group = 9 if msg.uri.user == "nowhere" else 1
    result = ctx.lb.start(group, "pstn")
    if not result:
        return ctx.reply(result.status, result.reason)
    ctx.on_failure(failover)
    return ctx.relay()


def failover(fctx):
    status = fctx.response.status
    if status < 500 and status != 408:
        return None
    if not fctx.lb.next():
        return None
    fctx.request.on_failure(failover)
    return fctx.relay()
'''
