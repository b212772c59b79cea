"""Matching keys: RFC 3261 §17.1.3, §17.2.3 and §9.2."""

from __future__ import annotations

import pytest

from txnkit import reply, request

from sipline.sip.requests import make_ack, make_cancel
from sipline.transaction import (
    MAGIC_COOKIE,
    client_key,
    client_key_for_request,
    invite_key_for_cancel,
    is_rfc3261_branch,
    server_key,
)
from sipline.transaction.keys import fallback_ack_keys


def test_magic_cookie() -> None:
    assert MAGIC_COOKIE == "z9hG4bK"
    assert is_rfc3261_branch("z9hG4bK776asdhds")
    assert not is_rfc3261_branch("776asdhds")
    assert not is_rfc3261_branch("Z9HG4BK776")  # the cookie is case-sensitive
    assert not is_rfc3261_branch(None)


def test_server_key_cookie_is_branch_sent_by_method() -> None:
    invite = request("INVITE", branch="z9hG4bK-1", host="10.0.0.1", port=5070)
    key = server_key(invite)
    assert key == ("z9hG4bK-1", "10.0.0.1:5070", "INVITE")
    assert all(isinstance(part, str) for part in key)


def test_server_key_retransmission_matches() -> None:
    assert server_key(request("INVITE")) == server_key(request("INVITE"))
    # Other headers do not matter with a cookie branch.
    assert server_key(request("OPTIONS", cseq=1)) == server_key(
        request("OPTIONS", cseq=2, call_id="other", from_tag="zz")
    )


def test_server_key_sent_by_separates_equal_branches() -> None:
    a = request("INVITE", host="10.0.0.1", port=5060)
    b = request("INVITE", host="10.0.0.2", port=5060)
    c = request("INVITE", host="10.0.0.1", port=5062)
    d = request("INVITE", host="10.0.0.1", port=None)
    assert len({server_key(m) for m in (a, b, c, d)}) == 4


def test_server_key_method_separates_transactions() -> None:
    assert server_key(request("INVITE")) != server_key(request("BYE"))
    assert server_key(request("OPTIONS")) != server_key(request("REGISTER"))


def test_ack_for_non_2xx_matches_the_invite() -> None:
    invite = request("INVITE")
    ack = make_ack(invite, reply(invite, 404))
    assert server_key(ack) == server_key(invite)


def test_ack_for_2xx_with_new_branch_matches_nothing() -> None:
    invite = request("INVITE", branch="z9hG4bK-inv")
    ack = request("ACK", branch="z9hG4bK-ack", to_tag="b1")
    assert server_key(ack) != server_key(invite)


def test_cancel_is_its_own_transaction_and_points_at_the_invite() -> None:
    invite = request("INVITE")
    cancel = make_cancel(invite)
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel)[2] == "CANCEL"
    assert invite_key_for_cancel(cancel) == server_key(invite)


def test_cancel_from_another_sender_does_not_match() -> None:
    invite = request("INVITE", host="10.0.0.1")
    cancel = make_cancel(request("INVITE", host="10.6.6.6"))
    assert invite_key_for_cancel(cancel) != server_key(invite)


# -- RFC 2543 fallback (§17.2.3 second half) -------------------------------------------------


def test_fallback_without_branch_or_without_cookie() -> None:
    for branch in (None, "old-style-branch"):
        invite = request("INVITE", branch=branch)
        key = server_key(invite)
        assert key[0] == "2543"
        assert all(isinstance(part, str) for part in key)
        # A retransmission matches.
        assert server_key(request("INVITE", branch=branch)) == key


@pytest.mark.parametrize(
    "change",
    [
        {"ruri": "sip:carol@example.com"},
        {"to_tag": "t9"},
        {"from_tag": "f9"},
        {"call_id": "other@h"},
        {"cseq": 2},
        {"host": "10.0.0.9"},
    ],
)
def test_fallback_key_uses_each_field(change: dict[str, object]) -> None:
    base = server_key(request("INVITE", branch=None))
    assert server_key(request("INVITE", branch=None, **change)) != base  # type: ignore[arg-type]


def test_fallback_ack_matches_invite_through_response_to_tag() -> None:
    invite = request("INVITE", branch=None)
    ack = make_ack(invite, reply(invite, 486, to_tag="resp-tag"))
    with_tag, without_tag = fallback_ack_keys(ack)
    assert without_tag == server_key(invite)
    assert with_tag != server_key(invite)
    assert server_key(ack) == with_tag


def test_fallback_ack_inside_a_dialog_matches_with_its_tag() -> None:
    reinvite = request("INVITE", branch=None, to_tag="dlg")
    ack = make_ack(reinvite, reply(reinvite, 491))
    assert server_key(ack) == server_key(reinvite)


def test_fallback_cancel() -> None:
    invite = request("INVITE", branch=None)
    cancel = make_cancel(invite)
    assert server_key(cancel) != server_key(invite)
    assert invite_key_for_cancel(cancel) == server_key(invite)


def test_fallback_and_cookie_keys_never_collide() -> None:
    assert len(server_key(request("INVITE"))) != len(server_key(request("INVITE", branch=None)))


# -- client side (§17.1.3) -------------------------------------------------------------------


def test_client_key_branch_and_cseq_method() -> None:
    invite = request("INVITE", branch="z9hG4bK-c1")
    assert client_key_for_request(invite) == ("z9hG4bK-c1", "INVITE")
    assert client_key(reply(invite, 180)) == ("z9hG4bK-c1", "INVITE")
    cancel = make_cancel(invite)
    assert client_key_for_request(cancel) == ("z9hG4bK-c1", "CANCEL")
    # The response to the CANCEL belongs to the CANCEL transaction.
    assert client_key(reply(cancel, 200)) == ("z9hG4bK-c1", "CANCEL")


def test_client_key_without_branch() -> None:
    invite = request("INVITE", branch=None)
    assert client_key(reply(invite, 200)) is None
    with pytest.raises(ValueError):
        client_key_for_request(invite)
