"""Helpers of the dialog tests: raw UDP phones on loopback and a call between two of them
through a proxy (imported by the test modules next to it: ``from dialogkit import ...``)."""

from __future__ import annotations

import socket
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipline.routing.script import load_script
from sipline.sip import Request, Response, make_response, parse_message

LOOPBACK = "127.0.0.1"


class Phone:
    """A SIP user agent as a bare UDP socket: what it sends is written out in full."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.hostport = f"{LOOPBACK}:{self.port}"
        self.contact = f"sip:{name}@{self.hostport}"
        self.backlog: list[tuple[Any, tuple[str, int]]] = []

    def send(self, data: bytes | Request | Response, addr: tuple[str, int]) -> None:
        if not isinstance(data, bytes):
            data = data.to_bytes()
        self.sock.sendto(data, addr)

    def receive(self, want: Callable[[Any], bool], timeout: float = 3.0) -> tuple[Any, tuple[str, int]]:
        """The next message ``want`` accepts; the others are kept for later calls."""
        for i, (msg, addr) in enumerate(self.backlog):
            if want(msg):
                del self.backlog[i]
                return msg, addr
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: nothing wanted within {timeout}s "
                                   f"(kept: {[_summary(m) for m, _ in self.backlog]})")
            self.sock.settimeout(left)
            data, addr = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if want(msg):
                return msg, addr
            self.backlog.append((msg, addr))

    def request(self, method: str, timeout: float = 3.0) -> tuple[Request, tuple[str, int]]:
        return self.receive(lambda m: getattr(m, "method", None) == method, timeout)

    def response(self, method: str, final: bool = True, timeout: float = 3.0) -> Response:
        """The next final response (or, ``final=False``, provisional other than 100)."""

        def want(m: Any) -> bool:
            status = getattr(m, "status", None)
            return (status is not None and m.cseq.method == method
                    and (status >= 200 if final else 100 < status < 200))

        return self.receive(want, timeout)[0]

    def answer(self, request: Request, addr: tuple[str, int], status: int, *,
               to_tag: str | None = None, contact: bool = False) -> Response:
        headers = [("Record-Route", v) for v in request.get_all("Record-Route")]
        if contact:
            headers.append(("Contact", f"<{self.contact}>"))
        reply = make_response(request, status, to_tag=to_tag, headers=headers)
        self.send(reply, addr)
        return reply

    def quiet(self, timeout: float = 0.3) -> bool:
        """True when nothing arrives within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return True
        self.backlog.append((parse_message(data), ("", 0)))
        return False

    def close(self) -> None:
        self.sock.close()


def _summary(msg: Any) -> str:
    if getattr(msg, "method", None):
        return f"{msg.method} {msg.cseq}"
    return f"{msg.status} {msg.cseq}"


class Call:
    """One call from ``caller`` to ``callee`` through the proxy at ``proxy``."""

    def __init__(self, caller: Phone, callee: Phone, proxy: tuple[str, int],
                 ruri: str | None = None, from_user: str = "alice") -> None:
        self.caller = caller
        self.callee = callee
        self.proxy = proxy
        self.ruri = ruri or f"sip:service@{proxy[0]}:{proxy[1]}"
        self.callid = f"{uuid.uuid4().hex}@test"
        self.from_tag = "caller-" + uuid.uuid4().hex[:8]
        self.to_tag = "callee-" + uuid.uuid4().hex[:8]
        self.from_user = from_user
        self.caller_cseq = 1
        self.callee_cseq = 100
        self.record_route: list[str] = []  # as the 2xx carried it
        self.invite_at_callee: Request | None = None
        self.invite_addr: tuple[str, int] | None = None
        self.invite_branch = ""

    # -- messages ------------------------------------------------------------------------
    def _caller_request(self, method: str, cseq: int, *, in_dialog: bool, branch: str | None = None) -> bytes:
        if in_dialog:
            start = f"{method} {self.callee.contact} SIP/2.0"
            routes = "".join(f"Route: {r}\r\n" for r in reversed(self.record_route))
            to = f"<sip:bob@example.org>;tag={self.to_tag}"
        else:
            start = f"{method} {self.ruri} SIP/2.0"
            routes = ""
            to = "<sip:bob@example.org>"
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
        return (
            f"{start}\r\n"
            f"Via: SIP/2.0/UDP {self.caller.hostport};branch={branch};rport\r\n"
            f"{routes}"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.from_user}@example.org>;tag={self.from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.callid}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <{self.caller.contact}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def _callee_request(self, method: str, cseq: int) -> bytes:
        routes = "".join(f"Route: {r}\r\n" for r in self.record_route)
        return (
            f"{method} {self.caller.contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.callee.hostport};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            f"{routes}"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bob@example.org>;tag={self.to_tag}\r\n"
            f"To: <sip:{self.from_user}@example.org>;tag={self.from_tag}\r\n"
            f"Call-ID: {self.callid}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <{self.callee.contact}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    # -- call flow -----------------------------------------------------------------------
    def invite(self) -> Request:
        """The caller sends the INVITE; returns it as the callee received it."""
        self.invite_branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        self.caller.send(self._caller_request("INVITE", self.caller_cseq, in_dialog=False,
                                              branch=self.invite_branch), self.proxy)
        self.invite_at_callee, self.invite_addr = self.callee.receive(
            lambda m: getattr(m, "method", None) == "INVITE" and m.call_id == self.callid)
        return self.invite_at_callee

    def ring(self) -> None:
        assert self.invite_at_callee is not None and self.invite_addr is not None
        self.callee.answer(self.invite_at_callee, self.invite_addr, 180, to_tag=self.to_tag,
                           contact=True)
        self.caller.response("INVITE", final=False)

    def answer(self, status: int = 200) -> Response:
        """The callee answers the INVITE; returns the final response the caller got."""
        assert self.invite_at_callee is not None and self.invite_addr is not None
        reply = self.callee.answer(self.invite_at_callee, self.invite_addr, status,
                                   to_tag=self.to_tag, contact=status < 300)
        got = self.caller.response("INVITE")
        if status < 300:
            self.record_route = got.get_list("Record-Route")
        else:  # the callee's ACK for its non-2xx comes from the proxy, hop by hop
            self.callee.request("ACK")
        del reply
        return got

    def ack(self) -> Request:
        """The caller's ACK for the 2xx; returns it as the callee received it."""
        self.caller.send(self._caller_request("ACK", self.caller_cseq, in_dialog=True), self.proxy)
        return self.callee.request("ACK")[0]

    def establish(self, ring: bool = True) -> None:
        self.invite()
        if ring:
            self.ring()
        assert self.answer(200).status == 200
        self.ack()

    def cancel(self) -> Response:
        """The caller cancels its INVITE; returns the INVITE's final response (487)."""
        data = self._caller_request("CANCEL", self.caller_cseq, in_dialog=False,
                                    branch=self.invite_branch)
        self.caller.send(data, self.proxy)
        assert self.caller.response("CANCEL").status == 200
        cancel, addr = self.callee.request("CANCEL")
        self.callee.answer(cancel, addr, 200)
        assert self.invite_at_callee is not None and self.invite_addr is not None
        self.callee.answer(self.invite_at_callee, self.invite_addr, 487, to_tag=self.to_tag)
        final = self.caller.response("INVITE")
        self.callee.request("ACK")
        return final

    def caller_request(self, method: str = "BYE", status: int = 200) -> Request:
        """An in-dialog request from the caller, answered by the callee."""
        self.caller_cseq += 1
        self.caller.send(self._caller_request(method, self.caller_cseq, in_dialog=True), self.proxy)
        got, addr = self.callee.request(method)
        self.callee.answer(got, addr, status, contact=method in ("INVITE", "UPDATE"))
        assert self.caller.response(method).status == status
        if method == "INVITE":
            self.ack_again()
        return got

    def ack_again(self) -> None:
        self.caller.send(self._caller_request("ACK", self.caller_cseq, in_dialog=True), self.proxy)
        self.callee.request("ACK")

    def callee_request(self, method: str = "BYE", status: int = 200) -> Request:
        """An in-dialog request from the callee, answered by the caller."""
        self.callee_cseq += 1
        self.callee.send(self._callee_request(method, self.callee_cseq), self.proxy)
        got, addr = self.caller.request(method)
        self.caller.answer(got, addr, status)
        assert self.callee.response(method).status == status
        return got


def script(tmp_path: Path, body: str) -> Any:
    """A routing script module from ``body`` (dedented), loaded as sipline loads one."""
    path = tmp_path / f"routes_{uuid.uuid4().hex[:6]}.py"
    path.write_text(textwrap.dedent(body))
    return load_script(path)


