"""make_ack (RFC 3261 §17.1.1.3) and make_cancel (§9.1)."""

from __future__ import annotations

import pytest

from txnkit import reply, request

from sipline.sip import parse_message
from sipline.sip.requests import make_ack, make_cancel

ROUTES = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>, <sip:p3.example.com;lr>")


def _invite():  # type: ignore[no-untyped-def]
    return request(
        "INVITE",
        branch="z9hG4bK-inv1",
        ruri="sip:bob@biloxi.example.com;transport=udp",
        cseq=314159,
        routes=ROUTES,
        more_vias=("SIP/2.0/TCP 192.0.2.9;branch=z9hG4bK-down",),
        extra=("Content-Type: application/sdp", "Subject: hi"),
    )


def test_ack_for_non_2xx_headers() -> None:
    invite = _invite()
    resp = reply(invite, 486, to_tag="xyz")
    ack = make_ack(invite, resp)
    assert ack.method == "ACK"
    assert ack.raw_uri == invite.raw_uri
    assert ack.call_id == invite.call_id
    assert ack.get("From") == invite.get("From")
    assert ack.from_.tag == "a1"
    # To comes from the response, with its tag.
    assert ack.get("To") == resp.get("To")
    assert ack.to.tag == "xyz"
    # One Via: the INVITE's top Via, same branch.
    assert ack.get_all("Via") == ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-inv1"]
    assert ack.top_via is not None and ack.top_via.branch == "z9hG4bK-inv1"
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert ack.get_all("Route") == invite.get_all("Route")
    assert ack.max_forwards == 70
    assert ack.content_length == 0 and ack.body == b""
    # Nothing else of the INVITE is carried over.
    assert ack.get("Contact") is None and ack.get("Subject") is None
    assert ack.get("Content-Type") is None
    # The wire form parses back to the same thing.
    again = parse_message(ack.to_bytes())
    assert again.to_bytes() == ack.to_bytes()


def test_ack_top_via_taken_from_a_comma_separated_line() -> None:
    invite = request(
        "INVITE",
        branch="z9hG4bK-top",
        more_vias=(),
        extra=(),
    )
    text = invite.to_bytes().replace(
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-top",
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-top ,SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKo",
    )
    invite = parse_message(text)
    ack = make_ack(invite, reply(invite, 404))  # type: ignore[arg-type]
    assert ack.get_all("Via") == ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-top"]


def test_ack_without_routes_has_none() -> None:
    invite = request("INVITE")
    ack = make_ack(invite, reply(invite, 603))
    assert ack.get_all("Route") == []


@pytest.mark.parametrize("status", [100, 180, 200, 299])
def test_ack_refuses_provisional_and_2xx(status: int) -> None:
    invite = request("INVITE")
    with pytest.raises(ValueError):
        make_ack(invite, reply(invite, status))


def test_ack_refuses_non_invite() -> None:
    options = request("OPTIONS")
    with pytest.raises(ValueError):
        make_ack(options, reply(options, 404))


def test_cancel_headers() -> None:
    invite = _invite()
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL"
    assert cancel.raw_uri == invite.raw_uri
    assert cancel.call_id == invite.call_id
    assert cancel.get("From") == invite.get("From")
    assert cancel.get("To") == invite.get("To")
    assert cancel.to.tag is None  # no tag added
    assert cancel.get_all("Via") == ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-inv1"]
    assert (cancel.cseq.seq, cancel.cseq.method) == (314159, "CANCEL")
    assert cancel.get_all("Route") == list(ROUTES)
    assert cancel.max_forwards == 70
    assert cancel.content_length == 0
    assert cancel.get("Contact") is None


def test_cancel_keeps_an_existing_to_tag() -> None:
    reinvite = request("INVITE", to_tag="dlg-tag")
    cancel = make_cancel(reinvite)
    assert cancel.to.tag == "dlg-tag"


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_cancel_refuses_ack_and_cancel(method: str) -> None:
    with pytest.raises(ValueError):
        make_cancel(request(method))
