"""The dialog state machine, lifetimes, profiles and callbacks, on an injected clock."""

from __future__ import annotations

import logging
import random

import pytest
from sipline.sip import parse_message
from sipline_dialog import (
    CONFIRMED,
    CREATED,
    EARLY,
    ENDED,
    EXPIRED,
    FAILED,
    TERMINATED,
    DialogError,
    DialogState,
    DialogTable,
    ProfileError,
)
from sipline_dialog.config import DialogConfig
from sipline_dialog.sip import build_bye, did_of, first_contact, split_route_set


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A Store that keeps what the table reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def changed(self, dlg) -> None:
        self.events.append(("changed", dlg.id))

    def removed(self, dlg) -> None:
        self.events.append(("removed", dlg.id))


def make_table(clock=None, **settings) -> DialogTable:
    return DialogTable(DialogConfig(**settings), clock or Clock())


def new_dialog(table: DialogTable, callid: str = "call-1", **kw):
    return table.create(callid=callid, from_uri="sip:alice@a.example", from_tag="ft",
                        to_uri="sip:bob@b.example", cseq=kw.pop("cseq", 1),
                        contact="sip:alice@192.0.2.1:5060", **kw)


def confirmed_dialog(table: DialogTable, callid: str = "call-1", **kw):
    dlg = new_dialog(table, callid, **kw)
    table.confirm(dlg, to_tag="tt", contact="sip:bob@192.0.2.2:5060",
                  caller_route_set=("<sip:up.example;lr>",),
                  callee_route_set=("<sip:down.example;lr>",), sock="udp:127.0.0.1:5060")
    return dlg


# ------------------------------------------------------------------------- states
def test_dialog_goes_unconfirmed_early_confirmed_and_counts():
    clock = Clock()
    table = make_table(clock, default_timeout=60)
    seen: list[str] = []
    for event in (CREATED, EARLY, CONFIRMED):
        table.subscribe(event, lambda dlg, ev: seen.append(ev))
    dlg = new_dialog(table)
    assert dlg.state is DialogState.UNCONFIRMED
    assert (table.processed, table.early, table.active) == (1, 0, 0)
    table.provisional(dlg, None)  # a 1xx without To tag: still unconfirmed
    assert dlg.state is DialogState.UNCONFIRMED
    table.provisional(dlg, "early-tag")
    assert dlg.state is DialogState.EARLY and dlg.early_tag == "early-tag"
    assert (table.early, table.active) == (1, 0)
    clock.now += 5
    assert table.confirm(dlg, to_tag="tt", contact="sip:bob@192.0.2.2")
    assert dlg.state is DialogState.CONFIRMED and dlg.to_tag == "tt"
    assert (table.early, table.active) == (0, 1)
    assert dlg.start_time == clock.now and dlg.expires == clock.now + 60
    assert dlg.id not in table.pending
    # a second 2xx (another fork) changes nothing
    assert not table.confirm(dlg, to_tag="other", contact="sip:carol@192.0.2.3")
    assert dlg.to_tag == "tt"
    assert seen == [CREATED, EARLY, CONFIRMED]


def test_ids_are_unique_and_tables_do_not_share_them():
    a, b = make_table(), make_table()
    ids = {new_dialog(a, f"c{i}").id for i in range(100)} | {new_dialog(b, f"d{i}").id for i in range(100)}
    assert len(ids) == 200


def test_match_by_cookie_then_by_callid_and_tags_with_direction():
    table = make_table()
    dlg = confirmed_dialog(table)
    assert table.match("call-1", "ft", "tt", dlg.id) == (dlg, True)  # the caller's request
    assert table.match("call-1", "tt", "ft", dlg.id) == (dlg, False)  # the callee's
    assert table.match("call-1", "ft", "tt") == (dlg, True)  # no cookie: RFC 3261 fallback
    assert table.match("call-1", "tt", "ft", "unknown-did") == (dlg, False)
    assert table.match("other-call", "ft", "tt", dlg.id) is None  # cookie, wrong Call-ID
    assert table.match("call-1", "ft", "sibling", dlg.id) is None  # a forked sibling's tag
    assert table.match("call-1", "xx", "yy") is None


def test_early_dialog_matches_requests_of_either_side():
    table = make_table()
    dlg = new_dialog(table)
    table.provisional(dlg, "et")
    assert table.match("call-1", "ft", "et") == (dlg, True)  # PRACK from the caller
    assert table.match("call-1", "et", "ft") == (dlg, False)  # UPDATE from the callee


def test_bye_terminates_once_and_leaves_everything():
    table = make_table(profiles_no_value=["calls"], profiles_with_value=["caller"])
    store = Recorder()
    table.store = store
    ended: list[tuple[str, str]] = []
    table.subscribe(TERMINATED, lambda d, ev: ended.append((d.id, ev)))
    table.subscribe(ENDED, lambda d, ev: ended.append((d.id, ev)))
    dlg = confirmed_dialog(table)
    dlg.set_profile("calls")
    dlg.set_profile("caller", "alice")
    assert table.profile_size("calls") == 1 and table.profile_size("caller", "alice") == 1
    table.request(dlg, True, "BYE", 2)
    assert dlg.state is DialogState.DELETED and dlg.end_event == TERMINATED
    assert ended == [(dlg.id, TERMINATED), (dlg.id, ENDED)]
    assert table.profile_size("calls") == 0 and table.profile_size("caller") == 0
    assert not table.dialogs and not table.by_callid and table.active == 0
    assert table.terminated == 1
    assert store.events[-1] == ("removed", dlg.id)
    assert not table.end(dlg, TERMINATED)  # the second BYE (the other side's) is a no-op
    assert len(ended) == 2
    # the dialog keeps its memberships for the callbacks to read
    assert dlg.profiles == {("calls", None), ("caller", "alice")}


def test_cseq_is_kept_per_direction_and_ack_changes_nothing():
    table = make_table()
    dlg = confirmed_dialog(table, cseq=10)
    table.request(dlg, True, "INFO", 11)
    table.request(dlg, False, "INFO", 500)
    table.request(dlg, True, "ACK", 99)
    table.request(dlg, True, "INFO", 3)  # out of order: the highest stays
    assert (dlg.caller_cseq, dlg.callee_cseq) == (11, 500)


def test_reinvite_refreshes_lifetime_and_target():
    clock = Clock()
    table = make_table(clock, default_timeout=10)
    dlg = confirmed_dialog(table)
    clock.now += 8
    table.request(dlg, False, "INVITE", 1, contact="sip:bob@198.51.100.9")
    assert dlg.callee_contact == "sip:bob@198.51.100.9"
    assert dlg.expires == clock.now + 10
    clock.now += 5  # past the first expiry time: the old heap entry is stale
    assert table.expire_due() == []
    table.answered(dlg, True, "UPDATE", 200, contact="sip:bob@198.51.100.10")
    assert dlg.callee_contact == "sip:bob@198.51.100.10"
    clock.now += 10
    assert table.expire_due() == [dlg]
    assert dlg.end_event == EXPIRED and table.expired == 1


def test_expiry_and_per_dialog_timeout():
    clock = Clock()
    table = make_table(clock, default_timeout=100)
    short = confirmed_dialog(table, "short", lifetime=5)
    default = confirmed_dialog(table, "default")
    later = new_dialog(table, "later")
    later.set_timeout(20)  # before confirmation: the lifetime after the 2xx
    assert later.expires is None
    clock.now += 4.9
    assert table.expire_due() == []
    clock.now += 0.1
    assert table.expire_due() == [short]
    table.confirm(later, to_tag="x", contact="sip:x@192.0.2.9")
    assert later.expires == clock.now + 20
    later.set_timeout(3)  # a confirmed dialog: from now
    clock.now += 3
    assert table.expire_due() == [later]
    assert default.state is DialogState.CONFIRMED
    with pytest.raises(DialogError, match="whole number"):
        default.set_timeout(0)
    with pytest.raises(DialogError, match="ended"):
        short.set_timeout(5)


def test_pending_dialogs_fail_by_outcome_unrouted_or_unconfirmed_bound():
    clock = Clock()
    table = make_table(clock, unrouted_timeout=2, unconfirmed_timeout=30)
    failed: list[str] = []
    table.subscribe(FAILED, lambda d, ev: failed.append(d.callid))
    answered = new_dialog(table, "answered-404")
    unrouted = new_dialog(table, "never-relayed")
    ringing = new_dialog(table, "ringing-forever")
    ringing.relayed = True
    verdicts = {"answered-404": True, "ringing-forever": False}
    assert table.check_pending(outcome=lambda d: verdicts.get(d.callid)) == [answered]
    clock.now += 2
    assert table.check_pending(outcome=lambda d: verdicts.get(d.callid)) == [unrouted]
    clock.now += 27.9
    assert table.check_pending(outcome=lambda d: verdicts.get(d.callid)) == []
    clock.now += 0.1
    assert table.check_pending(outcome=lambda d: verdicts.get(d.callid)) == [ringing]
    assert failed == ["answered-404", "never-relayed", "ringing-forever"]
    assert table.failed == 3 and not table.dialogs


def test_end_rejects_unknown_events():
    table = make_table()
    with pytest.raises(ValueError, match="terminated, expired or failed"):
        table.end(new_dialog(table), CONFIRMED)


# ------------------------------------------------------------------------- profiles
def test_profiles_with_and_without_values():
    table = make_table(profiles_no_value=["calls"], profiles_with_value=["gw"])
    a, b, c = (confirmed_dialog(table, f"c{i}") for i in range(3))
    a.set_profile("calls")
    a.set_profile("calls")  # twice: counted once
    b.set_profile("calls")
    a.set_profile("gw", "gw1")
    b.set_profile("gw", "gw1")
    c.set_profile("gw", "gw2")
    c.set_profile("gw", 7)  # values are text
    assert table.profile_size("calls") == 2
    assert table.profile_size("gw") == 4  # without value: every membership
    assert (table.profile_size("gw", "gw1"), table.profile_size("gw", "gw2")) == (2, 1)
    assert table.profile_size("gw", 7) == 1 and table.profile_size("gw", "nope") == 0
    assert a.in_profile("gw") and a.in_profile("gw", "gw1") and not a.in_profile("gw", "gw2")
    assert c.unset_profile("gw")  # every value of c
    assert not c.unset_profile("gw")
    assert table.profile_size("gw") == 2 and "gw2" not in table.profiles.get("gw").members
    assert a.unset_profile("gw", "gw1") and table.profile_size("gw", "gw1") == 1
    with pytest.raises(ProfileError, match="unknown dialog profile 'nope'"):
        a.set_profile("nope")
    with pytest.raises(ProfileError, match="has no values"):
        a.set_profile("calls", "x")
    with pytest.raises(ProfileError, match="needs a value"):
        a.set_profile("gw")
    with pytest.raises(ProfileError, match="already defined"):
        table.profiles.define("calls", with_value=True)
    table.profiles.define("calls", with_value=False)  # the same kind again: fine


def test_profile_sizes_return_to_zero_whatever_way_dialogs_end():
    clock = Clock()
    table = make_table(clock, profiles_no_value=["all"], profiles_with_value=["user"],
                       default_timeout=50, unrouted_timeout=1)
    rng = random.Random(7)
    live = []
    for i in range(500):
        dlg = new_dialog(table, f"call-{i}")
        dlg.set_profile("all")
        dlg.set_profile("user", f"u{rng.randrange(20)}")
        live.append(dlg)
        assert table.profile_size("all") == len(table.dialogs)
    for dlg in live:
        fate = rng.randrange(4)
        if fate == 0:
            table.end(dlg, FAILED)
        elif fate == 1:
            dlg.relayed = True  # waits for its final response
        else:
            table.confirm(dlg, to_tag="t", contact="sip:b@192.0.2.2")
            if fate == 2:
                table.request(dlg, rng.random() < 0.5, "BYE", 2)
    assert 0 < table.profile_size("all") == len(table.dialogs)
    clock.now += 60
    table.expire_due()
    table.check_pending(outcome=lambda d: True)
    assert table.profile_size("all") == 0 and table.profile_size("user") == 0
    assert all(not p.members for p in table.profiles)
    assert (table.active, table.early, len(table.dialogs), len(table.by_callid)) == (0, 0, 0, 0)
    assert table.processed == 500 == table.failed + table.terminated + table.expired


# ------------------------------------------------------------------------- callbacks
def test_callbacks_run_in_order_and_a_failing_one_is_logged(caplog):
    table = make_table()
    calls: list[str] = []

    def broken(dlg, event):
        raise RuntimeError("boom")

    table.subscribe(ENDED, broken)
    table.subscribe(ENDED, lambda d, ev: calls.append("global"))
    dlg = confirmed_dialog(table)
    dlg.on(EXPIRED, lambda d, ev: calls.append("own-expired"))
    dlg.on(ENDED, lambda d, ev: calls.append("own-ended"))
    with caplog.at_level(logging.ERROR, logger="sipline.plugin.dialog"):
        table.end(dlg, EXPIRED)
    assert calls == ["own-expired", "global", "own-ended"]
    assert "ended callback" in caplog.text and "boom" in caplog.text
    table.unsubscribe(ENDED, broken)
    with pytest.raises(ValueError, match="unknown dialog event"):
        table.subscribe("hangup", broken)
    with pytest.raises(ValueError, match="unknown dialog event"):
        dlg.on("hangup", broken)


def test_only_confirmed_dialog_changes_reach_the_store():
    table = make_table(profiles_no_value=["calls"])
    store = Recorder()
    table.store = store
    dlg = new_dialog(table)
    dlg.vars["x"] = 1
    dlg.set_profile("calls")
    assert store.events == []  # not confirmed: nothing stored
    table.confirm(dlg, to_tag="t", contact="sip:b@192.0.2.2")
    assert store.events == [("changed", dlg.id)]
    dlg.vars["y"] = 2
    dlg.vars.update(z=3)
    del dlg.vars["x"]
    table.request(dlg, True, "INFO", 2)
    assert store.events.count(("changed", dlg.id)) == 5
    table.end(dlg)
    assert store.events[-1] == ("removed", dlg.id)
    assert store.events.count(("removed", dlg.id)) == 1


# ------------------------------------------------------------------------- SIP details
def test_route_sets_split_around_our_entries():
    ours = lambda value: did_of(value) == "d1"
    rr = ["<sip:p3.example;lr>", "<sip:p2.example;lr>", "<sip:us;lr;did=d1>",
          "<sip:p1.example;lr>"]
    caller, callee = split_route_set(rr, ours)
    assert callee == ("<sip:p2.example;lr>", "<sip:p3.example;lr>")  # nearest first
    assert caller == ("<sip:p1.example;lr>",)
    # two entries of ours (a change of transport) and nobody else
    assert split_route_set(["<sip:us;transport=tcp;lr;did=d1>", "<sip:us;lr;did=d1>"], ours) == ((), ())
    assert split_route_set(["<sip:p1.example;lr>"], ours) is None


def test_bye_to_each_side_is_built_from_the_dialog():
    table = make_table()
    dlg = confirmed_dialog(table, cseq=7)
    dlg.callee_cseq = 3
    to_callee = build_bye(dlg, True)
    assert to_callee.method == "BYE" and to_callee.raw_uri == "sip:bob@192.0.2.2:5060"
    assert to_callee.get_all("Route") == ["<sip:down.example;lr>"]
    assert (to_callee.from_.tag, to_callee.to.tag) == ("ft", "tt")
    assert str(to_callee.from_.uri) == "sip:alice@a.example"
    assert to_callee.cseq.seq == 8 and to_callee.call_id == "call-1"
    to_caller = build_bye(dlg, False)
    assert to_caller.raw_uri == "sip:alice@192.0.2.1:5060"
    assert to_caller.get_all("Route") == ["<sip:up.example;lr>"]
    assert (to_caller.from_.tag, to_caller.to.tag) == ("tt", "ft")
    assert to_caller.cseq.seq == 4
    assert build_bye(dlg, True).cseq.seq == 9  # a second BYE: the next CSeq
    # parsed back as a real message would be
    assert parse_message(to_caller.to_bytes().replace(b"\r\n", b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n", 1)).method == "BYE"


def test_bye_through_a_strict_router_puts_it_in_the_request_uri():
    table = make_table()
    dlg = confirmed_dialog(table)
    dlg.callee_route_set = ("<sip:strict.example>", "<sip:p2.example;lr>")
    bye = build_bye(dlg, True)
    assert bye.raw_uri == "sip:strict.example"
    assert bye.get_all("Route") == ["<sip:p2.example;lr>", "<sip:bob@192.0.2.2:5060>"]
    with pytest.raises(ValueError, match="not confirmed"):
        build_bye(new_dialog(table, "unconfirmed"), True)


def test_cookie_and_contact_are_read_from_the_header_text():
    assert did_of("<sip:127.0.0.1:5060;lr;did=ab.1f>") == "ab.1f"
    assert did_of("<sip:127.0.0.1:5060;did=ab.1f;lr>, <sip:p2;lr>") == "ab.1f"
    assert did_of("<sip:p1;lr>, <sip:127.0.0.1;lr;did=x>") is None  # not the first entry
    assert did_of("<sip:127.0.0.1;lr>") is None
    for contact, uri in [
        ("<sip:a@192.0.2.1:5070;transport=tcp>;expires=60", "sip:a@192.0.2.1:5070;transport=tcp"),
        ("Alice <sip:a@192.0.2.1>, <sip:b@192.0.2.2>", "sip:a@192.0.2.1"),
        ("sip:a@192.0.2.1;expires=60", "sip:a@192.0.2.1"),
        ('"A <x>, y" <sip:a@192.0.2.1>', "sip:a@192.0.2.1"),  # the parser's case
        ("*", ""),
    ]:
        msg = parse_message(
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
            f"To: <sip:b@c>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n"
            f"Content-Length: 0\r\n\r\n".encode())
        assert first_contact(msg) == uri, contact
