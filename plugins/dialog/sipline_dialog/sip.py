"""SIP details of dialogs: route sets from a 2xx's Record-Route, the BYEs sipline sends
itself (RFC 3261 §12.2.1.1, §15.1.1), socket names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.proxy import build_request
from sipline.sip import SipParseError, parse_name_addr

if TYPE_CHECKING:
    from sipline.sip import Request
    from sipline.transport.base import Source

    from sipline_dialog.dialog import Dialog


def split_route_set(
    record_routes: list[str], is_ours: Callable[[str], bool]
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``(caller route set, callee route set)`` from the Record-Route values of the 2xx.

    The list runs from the proxy nearest the callee (top) to the one nearest the
    caller (bottom); our own entries (one, or two when the call changed transport)
    split it. Each route set is in the order a request *from us* follows it: towards
    the callee the entries above ours, nearest first (so reversed); towards the caller
    the entries below ours, as they are. ``is_ours(value)`` judges one raw entry.
    None when none of the entries is ours.
    """
    ours = [i for i, value in enumerate(record_routes) if is_ours(value)]
    if not ours:
        return None
    first, last = ours[0], ours[-1]
    callee = tuple(v.strip() for v in reversed(record_routes[:first]))
    caller = tuple(v.strip() for v in record_routes[last + 1:])
    return caller, callee


def did_of(value: str) -> str | None:
    """The ``did`` parameter of the first entry of a Route or Record-Route value, read
    from the text (no parsing on the message path); None when it has none."""
    i = value.find(";did=")
    if i < 0:
        return None
    close = value.find(">")
    if 0 <= close < i:
        return None  # in a later entry, not the first
    start = i + 5
    end = start
    length = len(value)
    while end < length and value[end] not in ";>, \t":
        end += 1
    return value[start:end] or None


def first_contact(msg: Any) -> str:
    """The URI of the message's first Contact, or "" (none, ``*`` or malformed).

    The usual forms (``<uri>`` with an unquoted display name, or a bare URI) are cut
    from the header's text; anything else goes through the parser.
    """
    value = msg.get("contact")
    if not value:
        return ""
    if '"' not in value:
        start = value.find("<")
        if start >= 0:
            end = value.find(">", start)
            if end > start:
                return value[start + 1:end].strip()
        elif "," not in value and value.strip() != "*":
            return value.split(";", 1)[0].strip()
    try:
        contacts = msg.contacts
    except SipParseError:
        return ""
    return str(contacts[0].uri) if contacts else ""


def socket_name(source: Source | None) -> str:
    """OpenSIPS's socket notation for where a message arrived: ``udp:127.0.0.1:5060``."""
    if source is None:
        return ""
    host, port = source.local[:2]
    return f"{source.proto}:[{host}]:{port}" if ":" in host else f"{source.proto}:{host}:{port}"


def build_bye(dlg: Dialog, to_callee: bool) -> Request:
    """A BYE from sipline to one side of a confirmed dialog, as if the other side sent it.

    Request-URI: that side's Contact; Route: its route set (with a strict router first,
    RFC 3261 §12.2.1.1: the router's URI as Request-URI, the Contact as the last
    Route); From/To: the other side's identity; CSeq: one more than the last request
    seen in that direction (counted on the dialog, so a second BYE gets the next one).
    """
    if not dlg.to_tag:
        raise ValueError(f"dialog {dlg.id} is not confirmed: no BYE without the callee's tag")
    if to_callee:
        target, routes = dlg.callee_contact, list(dlg.callee_route_set)
        dlg.caller_cseq += 1
        cseq = dlg.caller_cseq
        from_uri, from_tag, to_uri, to_tag = dlg.from_uri, dlg.from_tag, dlg.to_uri, dlg.to_tag
    else:
        target, routes = dlg.caller_contact, list(dlg.caller_route_set)
        dlg.callee_cseq += 1
        cseq = dlg.callee_cseq
        from_uri, from_tag, to_uri, to_tag = dlg.to_uri, dlg.to_tag, dlg.from_uri, dlg.from_tag
    if not target:
        raise ValueError(f"dialog {dlg.id}: no Contact of the {'callee' if to_callee else 'caller'}")
    ruri = target
    if routes:
        first = parse_name_addr(routes[0], what="Route").uri
        if "lr" not in getattr(first, "params", {}):
            ruri = str(first)
            routes = [*routes[1:], f"<{target}>"]
    return build_request(
        "BYE", ruri, from_uri=from_uri, to_uri=to_uri, call_id=dlg.callid, cseq=cseq,
        from_tag=from_tag, to_tag=to_tag, headers=[("Route", r) for r in routes],
    )
