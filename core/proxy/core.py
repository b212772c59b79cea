"""The stateful and stateless proxy core (RFC 3261 §16), the transaction user of sipline.

One :class:`ResponseContext` per relayed request (§16.7) owns the server
transaction and one :class:`Branch` per target, each with its client
transaction. Branch ids carry a hash of the request's routing identity so that
a request coming back to us unchanged is detected as a loop (§16.3 step 4).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sipline.proxy.nexthop import NextHop, ip_literal, lookup_host, resolve_target, target_uri
from sipline.proxy.result import Relayed, RelayError
from sipline.sip import Request, Response, SipParseError, SipURI, make_response
from sipline.sip.requests import make_cancel
from sipline.stats import (
    FWD_REPLIES,
    FWD_REQUESTS,
    TM_2XX,
    TM_FINAL_BASE,
    UAC_TRANSACTIONS,
    UAS_TRANSACTIONS,
)
from sipline.transaction import (
    State,
    TimerConfig,
    TransactionLayer,
    WheelClock,
)
from sipline.transport import via_destination

if TYPE_CHECKING:
    from sipline.routing.context import RequestContext
    from sipline.server import Server
    from sipline.transport.base import Source

log = logging.getLogger("sipline.proxy")

MAGIC = "z9hG4bK"
_TRYING_ONLY = 100


class ReplyPath:
    """Where a server transaction sends its responses (RFC 3261 §18.2.2)."""

    __slots__ = ("transport", "addr", "conn")

    def __init__(self, transport: Any, addr: tuple[str, int], conn: Any) -> None:
        self.transport = transport
        self.addr = addr
        self.conn = conn

    def send(self, data: bytes) -> bool:
        return bool(self.transport.send(data, self.addr, self.conn))


class Branch:
    """One target of a relayed request, with its client transaction (the txn's user)."""

    __slots__ = (
        "rc", "index", "target", "request", "hop", "txn", "final", "provisional",
        "timer", "cancel_wanted", "cancel_reason", "cancelled", "done", "flags",
    )

    def __init__(self, rc: ResponseContext, index: int, target: str, flags: set[str]) -> None:
        self.rc = rc
        self.index = index
        self.target = target
        self.flags = flags
        self.request: Request | None = None
        self.hop: NextHop | None = None
        self.txn: Any = None
        self.final: Response | None = None
        self.provisional = False
        self.timer: Any = None
        self.cancel_wanted = False
        self.cancel_reason: str | None = None
        self.cancelled = False
        self.done = False

    # -- client transaction user ---------------------------------------------------------
    def on_response(self, txn: Any, response: Response) -> None:
        self.rc.branch_response(self, response)

    def on_timeout(self, txn: Any) -> None:
        self.rc.branch_failed(self, 408, "Request Timeout")

    def on_transport_error(self, txn: Any) -> None:
        self.rc.branch_failed(self, 503, "Service Unavailable")

    def on_terminated(self, txn: Any) -> None:
        pass

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ResponseContext:
    """RFC 3261 §16.7: collects the branches' responses and answers upstream once."""

    __slots__ = (
        "proxy", "ctx", "server_txn", "branches", "final_sent", "is_invite",
        "failure_handlers", "cancelled", "completing", "__weakref__",
    )

    def __init__(self, proxy: Proxy, ctx: RequestContext) -> None:
        self.proxy = proxy
        self.ctx: RequestContext | None = ctx  # None once released
        self.server_txn: Any = None
        self.branches: list[Branch] = []
        self.final_sent = False
        self.is_invite = ctx.msg.method == "INVITE"
        self.failure_handlers: list[Any] = []
        self.cancelled = False
        self.completing = False

    # -- server transaction user ---------------------------------------------------------
    def on_terminated(self, txn: Any) -> None:
        for b in self.branches:
            b.stop_timer()

    def on_transport_error(self, txn: Any) -> None:
        if self.ctx is not None:
            log.info("cannot send a response upstream for %s", self.ctx.msg.call_id)

    def on_ack_timeout(self, txn: Any) -> None:
        if self.ctx is not None:
            log.debug("no ACK for the final response of %s", self.ctx.msg.call_id)

    # -- replies -------------------------------------------------------------------------
    def reply(
        self,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        """Answer upstream with a locally generated response through the server transaction."""
        ctx = self.ctx
        if ctx is None:
            return  # released: the final response was already sent
        self.send_upstream(self.proxy.server.local_response(ctx.msg, status, reason, headers, body))

    def send_upstream(self, response: Response) -> None:
        first_final = False
        if response.status >= 200:
            if self.final_sent and not (self.is_invite and 200 <= response.status < 300):
                return  # one final per transaction; only extra 2xx pass (§16.7 step 5)
            if not self.final_sent:  # tm:2xx_transactions ... tm:6xx_transactions
                self.proxy.counters[TM_FINAL_BASE + min(response.status // 100, 6)] += 1
                first_final = True
            self.final_sent = True
        elif self.final_sent:
            return
        txn = self.server_txn
        if txn is not None and txn.state is not State.TERMINATED:
            txn.send_response(response)
        if first_final:
            ctx = self.ctx
            if ctx is not None and ctx.final_callbacks:
                self.proxy.server.run_final_callbacks(ctx, response)
        if self.final_sent:
            self.release()

    def release(self) -> None:
        """Hand the transactions of a finished response context to a stateless stand-in.

        Once the final response went upstream and no branch is pending, the
        context has nothing left to decide, but its transactions live on for
        their timers (up to 32 s). Detaching them frees the context, its
        branches, the request copies and the routing context by reference
        counting right now, instead of keeping them for the collector: that is
        most of what a call allocates. Late 2xx retransmissions still go
        upstream statelessly (RFC 6026).
        """
        if self.completing or any(not b.done for b in self.branches):
            return
        detached = self.proxy.detached
        for b in self.branches:
            b.stop_timer()
            txn = b.txn
            if txn is not None:
                txn.user = detached
                txn.slim()  # a branch still waiting for its 487 keeps its request
                b.txn = None
            b.request = None
            b.final = None
        self.branches = []
        txn = self.server_txn
        if txn is not None:
            txn.user = detached
            txn.slim()
            self.server_txn = None
        ctx = self.ctx
        if ctx is not None:
            ctx.response_context = None
            ctx.failure_handler = None
            ctx.release_script_apis()
            self.ctx = None

    # -- branch events -------------------------------------------------------------------
    def branch_response(self, branch: Branch, response: Response) -> None:
        if self.ctx is None:
            return
        if branch.done and response.status >= 300:
            return  # e.g. the 487 after Timer C already produced a local 408
        status = response.status
        try:
            response.pop_via()  # ours (§16.7 step 3)
        except (SipParseError, IndexError):
            return
        server = self.proxy.server
        if not server.run_route_reply(response, branch, self):
            if status < 200:
                return  # a route_reply hook dropped a provisional
        if status < 200:
            branch.provisional = True
            if self.is_invite:
                # Timer C runs from the last provisional (§16.6 step 11).
                self.proxy.arm_timer(branch, self.proxy.fr_inv_timeout)
            if branch.cancel_wanted and not branch.cancelled:
                self.proxy.send_cancel(branch)
            if status != _TRYING_ONLY:
                self.proxy.counters[FWD_REPLIES] += 1
                self.send_upstream(response)
            return
        branch.stop_timer()
        branch.done = True
        branch.final = response
        if status < 300:
            self.proxy.counters[FWD_REPLIES] += 1
            self.send_upstream(response)
            self.cancel_pending(reason="SIP;cause=200;text=\"Call completed elsewhere\"")
            return
        if status >= 600:
            self.cancel_pending()
        self.maybe_complete()
        if self.final_sent:
            self.release()  # a late final from a cancelled branch was the last one

    def branch_failed(self, branch: Branch, status: int, reason: str) -> None:
        """A branch ended without a response from downstream: make a local one (§16.7 step 2)."""
        ctx = self.ctx
        if branch.done or ctx is None:
            return
        branch.stop_timer()
        branch.done = True
        if branch.cancelled or self.cancelled:
            status, reason = 487, "Request Terminated"
        msg = branch.request or ctx.msg
        branch.final = make_response(msg, status, reason, to_tag=self.proxy.server.to_tag(msg))
        try:
            branch.final.pop_via()
        except (SipParseError, IndexError):
            pass
        self.maybe_complete()
        if self.final_sent:
            self.release()

    def cancel_pending(self, reason: str | None = None) -> None:
        """CANCEL every pending branch; ``reason`` goes in a Reason header (RFC 3326)."""
        for b in self.branches:
            if not b.done and not b.cancelled:
                b.cancel_wanted = True
                b.cancel_reason = reason
                if b.provisional:
                    self.proxy.send_cancel(b)

    def cancel(self) -> None:
        """The upstream CANCEL arrived (§16.10): cancel every pending branch."""
        self.cancelled = True
        self.cancel_pending()
        # Branches still waiting for DNS or their first response end now.
        for b in self.branches:
            if not b.done and not b.provisional and b.txn is None:
                self.branch_failed(b, 487, "Request Terminated")

    # -- completion ----------------------------------------------------------------------
    def pending(self) -> bool:
        return any(not b.done for b in self.branches)

    def maybe_complete(self) -> None:
        if self.final_sent or self.completing or self.pending():
            return
        best = self.best_response()
        if best is None:
            self.reply(500, "Server Internal Error")
            return
        status = best.status
        if 300 <= status < 600 and not self.cancelled:
            self.completing = True
            try:
                if self.proxy.server.run_failure(self, best):
                    return  # new branches, or a local reply, took over
            finally:
                self.completing = False
            if self.final_sent or self.pending():
                return
        self.forward_best(best)

    def forward_best(self, best: Response) -> None:
        if best.status == 503:
            best = best.copy()
            best.status = 500  # §16.7 step 6: never forward a 503
            best.reason = "Server Internal Error"
        if best.status in (401, 407):
            best = self._aggregate_challenges(best)
        self.proxy.counters[FWD_REPLIES] += 1
        self.send_upstream(best)

    def best_response(self) -> Response | None:
        finals = [b.final for b in self.branches if b.final is not None and b.final.status >= 300]
        if not finals:
            return None
        six = [r for r in finals if r.status >= 600]
        if six:
            return six[0]

        def rank(r: Response) -> tuple[int, int]:
            cls = r.status // 100
            # Within a class prefer answers the caller can act on (§16.7 step 6).
            preferred = r.status in (401, 407, 415, 420, 484)
            return (cls, 0 if preferred else 1)

        return min(finals, key=rank)

    def _aggregate_challenges(self, best: Response) -> Response:
        out = best.copy()
        for b in self.branches:
            r = b.final
            if r is None or r is best or r.status not in (401, 407):
                continue
            for name in ("WWW-Authenticate", "Proxy-Authenticate"):
                for value in r.get_all(name):
                    out.add_header(name, value)
        return out


class Proxy:
    """Relays requests statefully or statelessly and routes the responses back."""

    def __init__(self, server: Server) -> None:
        self.server = server
        #: The server's statistic slots (sipline.stats indices), counted here.
        self.counters = server.counters
        cfg = server.config.proxy
        self.timers = TimerConfig(t1=cfg.t1, t2=cfg.t2, t4=cfg.t4, c=cfg.fr_inv_timeout)
        self.fr_timeout = cfg.fr_timeout or self.timers.b
        # The client transaction's Timer B/F already ends a silent branch with
        # a timeout; an own timer is only needed for a shorter fr_timeout.
        self._fr_timer = self.fr_timeout < self.timers.b
        self.fr_inv_timeout = cfg.fr_inv_timeout
        self.trying_delay = cfg.trying_delay
        self.clock: WheelClock | None = None
        self.layer: TransactionLayer = None  # type: ignore[assignment]
        self._ids = itertools.count(1)
        self.last_source: Source | None = None
        self.detached = _Detached(self)
        self._prefix = os.urandom(3).hex()

    def start(self, loop: Any) -> None:
        # One loop timer for every transaction and branch timer (see WheelClock).
        self.clock = WheelClock(loop)
        self.layer = TransactionLayer(self.clock, self.timers)

    def stop(self) -> None:
        if self.layer is not None:
            self.layer.terminate_all()
        if self.clock is not None:
            self.clock.close()

    # -- incoming requests: transaction matching (§17.2.3) -----------------------------
    def absorb(self, msg: Request, source: Source) -> bool:
        """True when an existing transaction took ``msg`` (retransmission, ACK, CANCEL)."""
        layer = self.layer
        method = msg.method
        txn = layer.find_server(msg)
        if txn is not None:
            if txn.receive_request(msg):
                return True
            if method != "ACK":
                return True
            return False  # an ACK for a 2xx: routed like any request (§16.7 step 5)
        if method == "CANCEL":
            invite = layer.find_invite_for_cancel(msg)
            rc = getattr(invite, "user", None) if invite is not None else None
            if isinstance(rc, ResponseContext):
                self._answer_cancel(msg, source)
                if not rc.final_sent:
                    rc.cancel()
                return True
            if rc is self.detached:
                self._answer_cancel(msg, source)  # too late to cancel, but known (§9.2)
                return True
        return False

    def _answer_cancel(self, cancel: Request, source: Source) -> None:
        path = self.reply_path(cancel, source)
        txn = self.layer.create_server(cancel, path.send, source.reliable, _CANCEL_USER)
        txn.send_response(self.server.local_response(cancel, 200, "OK"))
        counters = self.counters
        counters[UAS_TRANSACTIONS] += 1
        counters[TM_2XX] += 1

    def reply_path(self, msg: Request, source: Source) -> ReplyPath:
        return ReplyPath(source.transport, self.server.response_address(msg, source), source.conn)

    # -- relaying ------------------------------------------------------------------------
    def loop_hash(self, msg: Request) -> str:
        """A hash of what identifies this request's routing (§16.6 step 8, §16.3 step 4)."""
        method = "INVITE" if msg.method == "CANCEL" else msg.method
        try:
            from_tag = msg.from_.tag or ""
            to_tag = msg.to.tag or ""
        except SipParseError:
            from_tag = to_tag = ""
        key = (
            method, msg.raw_uri, from_tag, to_tag, msg.call_id, msg.cseq.seq,
            tuple(msg.get_all("route")), tuple(msg.get_all("proxy-require")),
        )
        # Python's hash: seeded per process but shared by forked workers, which
        # is all loop detection needs (our own Via is only checked by us).
        return format(hash(key) & 0xFFFFFFFFFF, "010x")

    def is_loop(self, msg: Request, lhash: str) -> bool:
        server = self.server
        prefix = MAGIC + lhash + "."
        for via in msg.via:
            branch = via.branch
            if branch and branch.startswith(prefix) and server.is_local(via.host, via.port or 5060):
                return True
        return False

    def relay(
        self,
        ctx: RequestContext,
        targets: list[tuple[str, str | None, set[str]]],
        *,
        stateless: bool = False,
    ) -> Relayed:
        """Send ``ctx.msg`` to every ``(target, destination, branch flags)``."""
        msg = ctx.msg
        if not targets:
            return Relayed(False, error=RelayError.NO_TARGET, detail="no branch to relay to")
        if msg.max_forwards == 0:
            # §16.3 step 3: never forward it. The server answered 483 before routing to
            # everything but an ACK, which is dropped here (it would leave with -1).
            return Relayed(False, error=RelayError.TOO_MANY_HOPS)
        try:
            lhash = self.loop_hash(msg)
            if self.is_loop(msg, lhash):
                return Relayed(False, error=RelayError.LOOP)
        except SipParseError as exc:
            return Relayed(False, error=RelayError.NO_TARGET, detail=exc.reason)
        if stateless or msg.method == "ACK":
            return self._forward_stateless(ctx, targets[0], lhash)
        rc = ctx.response_context
        if rc is None:
            rc = ResponseContext(self, ctx)
            path = self.reply_path(msg, ctx.source)
            try:
                rc.server_txn = self.layer.create_server(
                    msg, path.send, ctx.source.reliable, rc, trying_after=self.trying_delay
                )
            except ValueError:
                return Relayed(False, error=RelayError.TRANSACTION_EXISTS)
            ctx.response_context = rc
            self.counters[UAS_TRANSACTIONS] += 1
        elif rc.final_sent:
            return Relayed(False, error=RelayError.TRANSACTION_EXISTS, detail="already answered")
        started = 0
        last_error = RelayError.SEND_FAILED
        for target, dst, flags in targets:
            branch = Branch(rc, len(rc.branches), target, flags)
            rc.branches.append(branch)
            error = self._start_branch(ctx, branch, target, dst, lhash)
            if error is None:
                started += 1
            else:
                last_error = error
                branch.done = True
                branch.final = make_response(msg, error.status, error.reason,
                                             to_tag=self.server.to_tag(msg))
        if not started:
            # No branch left: let the script answer (or the core with the error).
            return Relayed(False, error=last_error)
        return Relayed(True, branches=started)

    def _prepare(self, ctx: RequestContext, target: str, dst: str | None) -> tuple[Request, SipURI]:
        """Copy the request for one branch: R-URI, Max-Forwards, Route (§16.6 steps 1-6).

        :returns: the branch's request and the URI of the next hop.
        :raises ValueError: for a target or next hop that is not a sip/sips URI.
        """
        req = ctx.msg.copy()
        if target != req.raw_uri:
            req.set_uri(target)
        mf = req.max_forwards
        req.set_header("Max-Forwards", str(mf - 1 if mf is not None else 70))
        if dst is not None:
            return req, target_uri(dst)
        routes = req.routes
        if routes:
            top = target_uri(routes[0].uri)
            if not top.lr:
                # A strict router is next (§16.6 step 6): it wants the Route in the R-URI.
                values = req.get_list("route")
                req.remove_header("route")
                for v in values[1:]:
                    req.add_header("Route", v)
                req.add_header("Route", f"<{req.raw_uri}>")
                req.set_uri(top)
            return req, top
        return req, target_uri(req.uri)

    def _start_branch(
        self, ctx: RequestContext, branch: Branch, target: str, dst: str | None, lhash: str
    ) -> RelayError | None:
        try:
            req, hop_uri = self._prepare(ctx, target, dst)
            proto, addr, port, host = resolve_target(hop_uri)
        except (ValueError, SipParseError) as exc:
            log.info("cannot relay to %s: %s", target, exc)
            return RelayError.BAD_TARGET
        branch.request = req
        branch_id = f"{MAGIC}{lhash}.{self._prefix}{next(self._ids):x}.{branch.index}"
        if addr is None:
            self.server.spawn(self._resolve_and_send(ctx, branch, proto, host, port, branch_id))
            return None
        return self._send_branch(ctx, branch, proto, addr, port, branch_id)

    async def _resolve_and_send(
        self, ctx: RequestContext, branch: Branch, proto: str, host: str, port: int, bid: str
    ) -> None:
        addr = await lookup_host(host, port, proto)
        if branch.done:
            return
        if addr is None:
            log.info("cannot resolve %s", host)
            branch.rc.branch_failed(branch, 503, "Service Unavailable")
            return
        error = self._send_branch(ctx, branch, proto, addr, port, bid)
        if error is not None:
            branch.rc.branch_failed(branch, error.status, error.reason)

    def _send_branch(
        self, ctx: RequestContext, branch: Branch, proto: str, addr: str, port: int, bid: str
    ) -> RelayError | None:
        server = self.server
        transport = server.transport_for(proto, addr)
        if transport is None:
            return RelayError.NO_TRANSPORT
        req = branch.request
        assert req is not None
        if ctx.rr:
            self._add_record_route(req, ctx, transport)
        req.push_via(f"SIP/2.0/{proto.upper()} {server.sent_by(transport)};branch={bid}")
        hop = branch.hop = NextHop(proto, addr, port, transport)
        rc = branch.rc
        if server.run_route_branch(req, branch, ctx) is False:
            branch.done = True
            branch.final = None
            rc.maybe_complete()
            return None
        txn = self.layer.create_client(req, hop.send, proto != "udp", branch)
        branch.txn = txn
        counters = self.counters
        counters[UAC_TRANSACTIONS] += 1
        counters[FWD_REQUESTS] += 1
        if self._fr_timer:
            self.arm_timer(branch, self.fr_timeout)
        if not txn.start():
            return RelayError.SEND_FAILED
        return None

    def _add_record_route(self, req: Request, ctx: RequestContext, out: Any) -> None:
        server = self.server
        inbound = ctx.source.transport
        extra = ctx.rr_params
        if out is not inbound:
            # Changing transport or address family: record both sides (RFC 5658).
            value = server.record_route_value(inbound)
            if extra:
                value = value[:-1] + extra + ">"
            req.add_header("Record-Route", value, first=True)
        value = server.record_route_value(out)
        if extra:
            value = value[:-1] + extra + ">"
        req.add_header("Record-Route", value, first=True)

    def arm_timer(self, branch: Branch, seconds: float) -> None:
        branch.stop_timer()
        if self.clock is not None and not branch.done:
            branch.timer = self.clock.call_later(seconds, self._branch_timeout, branch)

    def _branch_timeout(self, branch: Branch) -> None:
        """fr_timeout (no response) or Timer C (ringing too long): local 408 (§16.8)."""
        branch.timer = None
        if branch.done:
            return
        if branch.provisional:
            # CANCEL first (while the branch still has its request), without
            # marking it cancelled: its answer upstream is this 408, not a 487.
            self.send_cancel(branch, mark=False)
        elif branch.txn is not None:
            branch.txn.terminate()
        branch.rc.branch_failed(branch, 408, "Request Timeout")

    def send_cancel(self, branch: Branch, *, mark: bool = True) -> None:
        """CANCEL one pending INVITE branch (§9.1): only after a provisional arrived.

        ``mark`` records the branch as cancelled, so that a local final for it
        becomes 487 (an upstream CANCEL); Timer C passes False (it answers 408).
        """
        if branch.cancelled or branch.request is None or branch.hop is None:
            return
        if branch.request.method != "INVITE":
            return
        branch.cancelled = mark
        cancel = make_cancel(branch.request)
        if branch.cancel_reason:
            cancel.add_header("Reason", branch.cancel_reason)
        hop = branch.hop
        if not self.server.run_route_local(cancel, (hop.proto, hop.host, hop.port)):
            return  # a route_local hook vetoed it
        txn = self.layer.create_client(cancel, hop.send, hop.proto != "udp", _CANCEL_USER)
        self.counters[UAC_TRANSACTIONS] += 1
        txn.start()

    def _forward_stateless(
        self, ctx: RequestContext, target: tuple[str, str | None, set[str]], lhash: str
    ) -> Relayed:
        """OpenSIPS ``forward()``: no transaction; the branch id is stable (§16.11)."""
        uri, dst, _ = target
        try:
            req, hop_uri = self._prepare(ctx, uri, dst)
            proto, addr, port, host = resolve_target(hop_uri)
        except (ValueError, SipParseError):
            return Relayed(False, error=RelayError.BAD_TARGET)
        if addr is None:
            self.server.spawn(self._resolve_stateless(ctx, req, proto, host, port, lhash))
            return Relayed(True, branches=1)
        return self._send_stateless(ctx, req, proto, addr, port, lhash)

    async def _resolve_stateless(
        self, ctx: RequestContext, req: Request, proto: str, host: str, port: int, lhash: str
    ) -> None:
        addr = await lookup_host(host, port, proto)
        if addr is not None:
            self._send_stateless(ctx, req, proto, addr, port, lhash)

    def _send_stateless(
        self, ctx: RequestContext, req: Request, proto: str, addr: str, port: int, lhash: str
    ) -> Relayed:
        server = self.server
        transport = server.transport_for(proto, addr)
        if transport is None:
            return Relayed(False, error=RelayError.NO_TRANSPORT)
        top = ctx.msg.top_via
        upstream = (top.branch or str(top)) if top is not None else ""
        salt = format(hash(upstream) & 0xFFFFFFFF, "08x")
        if ctx.rr:
            self._add_record_route(req, ctx, transport)
        req.push_via(f"SIP/2.0/{proto.upper()} {server.sent_by(transport)};branch={MAGIC}{lhash}.{salt}")
        if not transport.send(req.to_bytes(), (addr, port)):
            return Relayed(False, error=RelayError.SEND_FAILED)
        self.counters[FWD_REQUESTS] += 1
        return Relayed(True, branches=1)

    # -- responses -----------------------------------------------------------------------
    def on_response(self, msg: Response, source: Source) -> bool:
        """Give a response to its client transaction; False when none matches."""
        txn = self.layer.find_client(msg)
        if txn is None:
            return False
        self.last_source = source  # read by route_reply during this synchronous call
        txn.receive_response(msg)
        return True

    def forward_response_statelessly(self, msg: Response) -> bool:
        """§16.11: a response to a request we forwarded statelessly (our Via on top)."""
        server = self.server
        try:
            top = msg.top_via
            if top is None or not server.is_local(top.host, top.port or 5060):
                return False
            msg.pop_via()
            nxt = msg.top_via
        except (SipParseError, IndexError):
            return False
        if nxt is None:
            return False
        proto = "tcp" if nxt.transport.lower() == "tcp" else "udp"
        host, port = via_destination(nxt, reliable=proto == "tcp")
        if ip_literal(host) is None:
            return False  # a name would need DNS here, on the per-message path
        transport = server.transport_for(proto, host)
        if transport is None:
            return False
        if not transport.send(msg.to_bytes(), (host, port)):
            return False
        self.counters[FWD_REPLIES] += 1
        return True


class _Detached:
    """The user of transactions whose response context was released.

    Client transactions in Accepted pass 2xx retransmissions up: they are
    forwarded statelessly by Via, as RFC 6026 asks of a proxy. Everything
    else (timeouts, ACK timeouts, termination) needs no action any more.
    """

    __slots__ = ("proxy",)

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def on_response(self, txn: Any, response: Response) -> None:
        if 200 <= response.status < 300:
            self.proxy.forward_response_statelessly(response)
        txn.slim()  # e.g. the 487 of a cancelled branch arrived: nothing more to build

    def on_timeout(self, txn: Any) -> None:
        pass

    def on_transport_error(self, txn: Any) -> None:
        pass

    def on_terminated(self, txn: Any) -> None:
        pass

    def on_ack_timeout(self, txn: Any) -> None:
        pass


class _CancelUser:
    """Transaction user for CANCEL transactions: nothing to do but exist."""

    __slots__ = ()

    def on_response(self, txn: Any, response: Response) -> None:
        pass

    def on_timeout(self, txn: Any) -> None:
        pass

    def on_transport_error(self, txn: Any) -> None:
        pass

    def on_terminated(self, txn: Any) -> None:
        pass

    def on_ack_timeout(self, txn: Any) -> None:
        pass


_CANCEL_USER = _CancelUser()
