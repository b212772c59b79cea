"""REGISTER processing (RFC 3261 §10.3) and lookup for routing (OpenSIPS ``save``/``lookup``)."""

from __future__ import annotations

import email.utils
import logging
import time
from typing import TYPE_CHECKING, Any

from sipline.routing.actions import Reply
from sipline.sip import SipParseError, SipURI, split_comma
from sipline_registrar.config import RegistrarConfig
from sipline_registrar.location import Binding, LocationStore, best_first, methods_mask

if TYPE_CHECKING:
    from sipline.routing.context import RequestContext

log = logging.getLogger("sipline.plugin.registrar")

MAX_EXPIRES_DIGITS = 10
MAX_AOR_PART = 255  # username and domain columns of the location table


def aor_of(uri: Any) -> str | None:
    """``user@host`` of a sip/sips URI (host lowercased), or None for anything else."""
    if not isinstance(uri, SipURI) or not uri.user:
        return None
    return f"{uri.user}@{uri.host}"


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The ``Date`` header value for now (RFC 3261 §20.17), formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]  # type: ignore[no-any-return]

class Registrar:
    """The registrar of one worker: the store, the settings and the counters."""

    def __init__(self, config: RegistrarConfig, clock: Any = time.monotonic,
                 store: LocationStore | None = None) -> None:
        self.config = config
        self.store = store if store is not None else LocationStore()
        self.clock = clock
        self.accepted = 0
        self.rejected = 0

    # -- REGISTER ------------------------------------------------------------------------
    def save(self, ctx: RequestContext) -> Reply:
        """Process a REGISTER and build the reply (OpenSIPS ``save("location")``)."""
        try:
            reply = self._save(ctx)
        except SipParseError as exc:
            reply = Reply(400, exc.reason)
        if 200 <= reply.status < 300:
            self.accepted += 1
        else:
            self.rejected += 1
        return reply

    def _save(self, ctx: RequestContext) -> Reply:
        msg = ctx.msg
        cfg = self.config
        now = self.clock()
        aor = aor_of(msg.to.uri)
        if aor is None:
            return Reply(400, "Invalid AOR in To: not a sip/sips URI with a user")
        if any(len(part) > MAX_AOR_PART for part in aor.rsplit("@", 1)):
            return Reply(400, "AOR too long")
        callid = msg.call_id
        cseq = msg.cseq.seq
        top = msg.top_via
        branch = top.branch if top is not None else None
        header_expires = msg.expires
        store = self.store
        existing = store.entries(aor)  # one read: in sql-only mode it is a query
        if msg.contact_star:
            # RFC 3261 §10.3 step 6: "*" only with Expires: 0 and nothing else.
            if header_expires != 0:
                return Reply(400, "Contact * requires Expires: 0")
            for key, b in existing.items():
                if b.callid == callid and cseq <= b.cseq:
                    return Reply(500, "Request out of order")
            store.remove_aor(aor)
            return self._ok(aor, now, msg, {})
        # OpenSIPS: the Contact's methods param (RFC 3840), else Allow, else every method.
        allow = methods_mask(msg.get_list("allow")) if msg.has("allow") else None
        changes: list[tuple[str, Binding | None]] = []
        for contact in msg.contacts:
            uri = contact.uri
            if not isinstance(uri, SipURI) and getattr(uri, "scheme", "") not in ("tel",):
                # a registrar binds only URIs it could route to
                return Reply(400, f"Unsupported Contact URI scheme {getattr(uri, 'scheme', '?')}")
            raw = contact.params.get("expires")
            if raw is not None:
                raw = raw.strip()
                expires = (
                    int(raw) if raw.isdigit() and len(raw) <= MAX_EXPIRES_DIGITS
                    else cfg.default_expires
                )
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = cfg.default_expires
            if 0 < expires < cfg.min_expires:
                return Reply(
                    423, "Interval Too Brief", (("Min-Expires", str(cfg.min_expires)),)
                )
            expires = min(expires, cfg.max_expires)
            key = str(uri)
            old = existing.get(key)
            if old is not None and old.callid == callid and cseq <= old.cseq:
                if cseq == old.cseq and branch and old.branch == branch:
                    continue  # a retransmission of the REGISTER that wrote it: same answer
                return Reply(500, "Request out of order")  # §10.3 step 7: never go back
            if expires == 0:
                changes.append((key, None))
                continue
            q = contact.q
            changes.append((key, Binding(
                contact=str(uri),
                expires=now + expires,
                q=q,
                callid=callid,
                cseq=cseq,
                received=self._received(ctx, uri),
                path=tuple(msg.get_list("path")),
                instance=contact.params.get("+sip.instance"),
                reg_id=_int_or_none(contact.params.get("reg-id")),
                user_agent=msg.get("user-agent"),
                socket=f"{ctx.source.proto}:{_hostport(*ctx.source.local)}",
                created=old.created if old is not None else now,
                methods=_contact_methods(contact.params.get("methods"), allow),
                branch=branch,
            )))
        # Apply all or nothing: a request that fails half way changes no binding.
        current = {k: b for k, b in existing.items() if b.expires > now}
        for key, binding in changes:
            if binding is None:
                current.pop(key, None)
            else:
                current[key] = binding
        limit = cfg.max_contacts
        if limit and len(current) > limit:
            if cfg.max_contacts_policy == "reject":
                return Reply(503, "Too many registered contacts")
            for key in sorted(current, key=lambda k: current[k].created)[: len(current) - limit]:
                del current[key]
        if changes or len(current) != len(existing):
            store.replace(aor, current)
        return self._ok(aor, now, msg, current)

    @staticmethod
    def _received(ctx: RequestContext, uri: Any) -> str | None:
        """Where the REGISTER really came from, when it is not where the Contact points."""
        host, port = ctx.source.remote
        c_host = getattr(uri, "host", "").strip("[]")
        c_port = getattr(uri, "port", None) or 5060
        if c_host == host and c_port == port:
            return None
        return f"sip:{_hostport(host, port)}" + (
            ";transport=tcp" if ctx.source.proto == "tcp" else ""
        )

    def _ok(self, aor: str, now: float, msg: Any, current: dict[str, Binding]) -> Reply:
        headers: list[tuple[str, str]] = []
        for b in best_first(current.values()):
            params = f";expires={max(0, round(b.expires - now))}"
            if b.q is not None:
                params += f";q={b.q:g}"
            headers.append(("Contact", f"<{b.contact}>{params}"))
        if msg.has("path"):
            headers.append(("Path", ", ".join(msg.get_list("path"))))
            headers.append(("Supported", "path"))
        headers.append(("Date", http_date()))
        return Reply(200, "OK", tuple(headers))

    # -- lookup --------------------------------------------------------------------------
    def lookup(self, ctx: RequestContext) -> bool:
        """Point the request at the registered contacts of its R-URI (``lookup("location")``).

        The best-q contact becomes the R-URI, the others parallel branches; a
        binding registered from behind a NAT or through Path is reached through
        its received address or first Path hop. False when nobody is registered.
        """
        aor = aor_of(ctx.ruri_uri)
        if aor is None:
            return False
        bindings = self.contacts_for(aor, ctx.msg.method)
        if not bindings:
            return False
        nat = self.config.nat_received
        first, *rest = bindings
        ctx.set_ruri(first.contact)
        ctx.set_dst(_destination(first, nat))
        for b in rest:
            ctx.append_branch(b.contact, dst=_destination(b, nat))
        return True

    def contacts_for(self, aor: str, method: str | None = None) -> list[Binding]:
        """The live bindings of ``aor``, best first; with ``method``, only those whose
        Allow includes it (OpenSIPS lookup's method filtering)."""
        found = self.store.bindings(aor, self.clock())
        if method is not None:
            found = [b for b in found if b.allows(method)]
        return found

    def expire(self) -> int:
        return self.store.expire(self.clock())


def _destination(b: Binding, nat_received: bool) -> str | None:
    """Path first (RFC 3327), then the NAT'ed source when configured, else the Contact."""
    if b.path:
        first = b.path[0].strip()
        return first[1:first.index(">")] if first.startswith("<") else first
    return b.received if nat_received else None


def _contact_methods(param: str | None, allow: int | None) -> int | None:
    if param is None:
        return allow
    return methods_mask(split_comma(param.strip().strip('"'), allow_empty=True))


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 9 else None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
