"""Dialogs in the ``dialog`` table: the Alembic branch, the rows, write-through and
write-back, and calls that go on across a restart (in-process servers, SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from dialogkit import Call, Phone, script
from sipline import db
from sipline.testing import free_port, inprocess_server, migration_round_trip, wait_for
from sipline_dialog import DialogPlugin, DialogState, DialogTable
from sipline_dialog.config import DialogConfig
from sipline_dialog.models import Base, dialog
from sipline_dialog.storage import from_row, to_row
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
def route_request(ctx):
    if ctx.has_to_tag():
        return None
    if ctx.msg.method == "INVITE":
        ctx.dialog.create()
        ctx.dialog.set_dlg_profile("calls")
        ctx.dialog.set_dlg_profile("caller", ctx.msg.from_.uri.user)
        ctx.dialog.vars["customer"] = "acme"
        return ctx.relay("{callee}")
"""


def rows(url: str) -> list[dict]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(dialog)).mappings()]
    finally:
        engine.dispose()


@pytest.fixture
def phones():
    made = [Phone("alice"), Phone("bob")]
    yield made
    for p in made:
        p.close()


def config(url: str, port: int, **dialog_settings) -> dict:
    settings = {"profiles_no_value": ["calls"], "profiles_with_value": ["caller"],
                "db_mode": "write-through", **dialog_settings}
    return {
        "server": {"listen": [f"udp:127.0.0.1:{port}"], "timer_interval": 0.05},
        "database": {"url": url},
        "plugins": {"dialog": settings},
    }


# ------------------------------------------------------------------ schema and packaging
def test_migration_round_trip(database_url):
    migration_round_trip(database_url, "dialog", Base.metadata)
    assert {c.name for c in dialog.columns} >= {
        "dlg_id", "callid", "from_uri", "from_tag", "to_uri", "to_tag", "caller_cseq",
        "callee_cseq", "caller_route_set", "callee_route_set", "caller_contact",
        "callee_contact", "caller_sock", "callee_sock", "state", "start_time", "timeout",
        "flags", "vars", "profiles",
    }


def test_wheel_carries_its_migrations_and_entry_points(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path), str(ROOT / "plugins" / "dialog")],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("sipline_dialog-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "sipline_dialog/migrations/dialog_0001_dialog.py" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    assert "[sipline.migrations]\ndialog = sipline_dialog.migrations" in text
    assert "[sipline]\ndialog = sipline_dialog.plugin" in text


def test_row_round_trip_keeps_every_field():
    clock_now = 500.0
    table = DialogTable(DialogConfig(profiles_with_value=["gw"], bye_on_timeout=True),
                        lambda: clock_now)
    dlg = table.create(callid="c@x", from_uri="sip:a@x", from_tag="f", to_uri="sip:b@y",
                       cseq=4, contact="sip:a@192.0.2.1", sock="udp:127.0.0.1:5060",
                       lifetime=90)
    dlg.set_profile("gw", "g1")
    dlg.vars.update(n=1, s="x", nested={"k": [1, 2]})
    table.confirm(dlg, to_tag="t", contact="sip:b@192.0.2.2",
                  caller_route_set=("<sip:p1;lr>", "<sip:p2,x;lr>"),
                  callee_route_set=("<sip:p3;lr>",), sock="tcp:127.0.0.1:5060")
    dlg.callee_cseq = 12
    row = to_row(dlg, 1e9)
    assert row["timeout"] == round(1e9 + 590) and row["start_time"] == round(1e9 + 500)
    assert row["state"] == 4 and row["flags"] == 1
    assert json.loads(row["profiles"]) == [["gw", "g1"]]
    other = DialogTable(DialogConfig(), lambda: clock_now)
    back, profiles = from_row(other, row, 1e9, clock_now)
    for field in ("id", "callid", "from_uri", "from_tag", "to_uri", "to_tag", "caller_cseq",
                  "callee_cseq", "caller_contact", "callee_contact", "caller_route_set",
                  "callee_route_set", "caller_sock", "callee_sock", "lifetime", "flags",
                  "start_time", "expires"):
        assert getattr(back, field) == getattr(dlg, field), field
    assert dict(back.vars) == dict(dlg.vars) and profiles == [("gw", "g1")]
    other.restore(back, profiles)
    assert back.state is DialogState.CONFIRMED and other.profile_size("gw", "g1") == 1
    assert other.profiles.get("gw").with_value  # defined on the fly, with values
    # a timeout that passed while the server was down: expires at the next tick
    late, _ = from_row(other, {**row, "dlg_id": "late"}, 1e9 + 1000, clock_now)
    assert late.expires == clock_now


# ------------------------------------------------------------------ write modes
def test_write_through_stores_confirmed_dialogs_and_deletes_ended_ones(database_url, tmp_path, phones):
    db.upgrade(database_url)
    caller, callee = phones
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(config(database_url, free_port()), [("dialog", plugin)],
                          script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.invite()
        call.ring()
        time.sleep(0.2)
        assert rows(database_url) == []  # early dialogs are not stored
        call.answer(200)
        call.ack()
        (dlg,) = plugin.table.dialogs.values()
        (row,) = wait_for(lambda: rows(database_url), what="the dialog row")
        assert (row["dlg_id"], row["callid"], row["state"]) == (dlg.id, call.callid, 4)
        assert (row["from_tag"], row["to_tag"]) == (call.from_tag, call.to_tag)
        assert json.loads(row["vars"]) == {"customer": "acme"}
        assert sorted(map(tuple, json.loads(row["profiles"]))) == [("caller", "alice"), ("calls", None)]
        assert 43190 < row["timeout"] - time.time() <= 43201
        call.caller_request("INFO")
        wait_for(lambda: rows(database_url)[0]["caller_cseq"] == 2, what="the new CSeq")
        call.caller_request("BYE")
        wait_for(lambda: rows(database_url) == [], what="the row deleted")


def test_write_back_writes_on_its_interval_and_at_shutdown(database_url, tmp_path, phones):
    db.upgrade(database_url)
    caller, callee = phones
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    toml = config(database_url, free_port(), db_mode="write-back", write_back_interval=0.5)
    with inprocess_server(toml, [("dialog", DialogPlugin())], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        for _ in range(3):
            call.caller_request("INFO")
        assert rows(database_url) == []  # nothing before the interval
        (row,) = wait_for(lambda: rows(database_url), timeout=3, what="the flush")
        assert row["caller_cseq"] == 4
    toml = config(database_url, free_port(), db_mode="write-back", write_back_interval=3600)
    with inprocess_server(toml, [("dialog", DialogPlugin())], script=routes) as srv:
        # the row of the first call was loaded; a second call is written at shutdown only
        second = Call(caller, callee, srv.address())
        second.establish()
        time.sleep(0.2)
        assert len(rows(database_url)) == 1
    assert {r["callid"] for r in rows(database_url)} == {call.callid, second.callid}


def test_a_call_goes_on_across_a_restart(database_url, tmp_path, phones):
    db.upgrade(database_url)
    caller, callee = phones
    port = free_port()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    first = DialogPlugin()
    with inprocess_server(config(database_url, port), [("dialog", first)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (before,) = first.table.dialogs.values()
        wait_for(lambda: rows(database_url), what="the dialog row")
    second = DialogPlugin()
    with inprocess_server(config(database_url, port), [("dialog", second)], script=routes):
        (after,) = second.table.dialogs.values()
        assert after.id == before.id and after.state is DialogState.CONFIRMED
        assert dict(after.vars) == {"customer": "acme"}
        assert second.table.profile_size("calls") == 1
        assert second.table.profile_size("caller", "alice") == 1
        assert second.table.active == 1
        assert abs(after.expires - before.expires) < 2  # clocks differ, wall time agrees
        call.callee_request("BYE")  # matched by its did cookie in the new process
        assert after.end_event == "terminated" and second.table.profile_size("calls") == 0
        wait_for(lambda: rows(database_url) == [], what="the row deleted")


def test_dialog_that_expired_while_down_gets_its_byes_at_startup(sqlite_url, tmp_path, phones):
    db.upgrade(sqlite_url)
    caller, callee = phones
    port = free_port()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact).replace(
        "ctx.dialog.create()", "ctx.dialog.create(timeout=1)"))
    toml = config(sqlite_url, port, bye_on_timeout=True)
    first = DialogPlugin()
    with inprocess_server(toml, [("dialog", first)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        wait_for(lambda: rows(sqlite_url), what="the dialog row")
        # stop before the lifetime ends: the server goes down with the call up
    time.sleep(1.2)
    second = DialogPlugin()
    with inprocess_server(toml, [("dialog", second)], script=routes):
        bye, addr = callee.request("BYE")
        callee.answer(bye, addr, 200)
        assert (bye.from_.tag, bye.to.tag, bye.cseq.seq) == (call.from_tag, call.to_tag, 2)
        bye, addr = caller.request("BYE")
        caller.answer(bye, addr, 200)
        assert second.table.expired == 1
        wait_for(lambda: rows(sqlite_url) == [], what="the row deleted")


def test_sql_mode_without_the_table_fails_to_start_with_advice(sqlite_url):
    from sipline.server import StartupError

    with pytest.raises(StartupError, match="sipline db upgrade"), inprocess_server(
        config(sqlite_url, free_port()), [("dialog", DialogPlugin())]
    ):
        pass
