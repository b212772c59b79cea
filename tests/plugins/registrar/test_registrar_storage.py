"""The registrar's SQL storage: migrations, the location table, the db_mode storage modes and
method filtering, against a real SQLite file and a real PostgreSQL server, in process."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select
from sqlalchemy.pool import NullPool

from sipline import db
from sipline.sip import parse_message
from sipline.testing import SipClient, inprocess_server, migration_round_trip, wait_for
from sipline_registrar.location import METHOD_BITS, Binding
from sipline_registrar.models import Base, location
from sipline_registrar.plugin import RegistrarPlugin
from sipline_registrar.storage import SqlWriter, apply_changes, contact_id, from_row, to_row
from test_registrar import contact_uris, invite, phone, register

ROOT = Path(__file__).resolve().parents[3]


def rows(url: str) -> list[dict]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(location)).mappings()]
    finally:
        engine.dispose()


def request(client: SipClient, method: str, user: str = "alice") -> bytes:
    host, port = client.server
    return (
        f"{method} sip:{user}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:10]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bob@{host}>;tag=b1\r\nTo: <sip:{user}@{host}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Servers:
    """In-process servers with the registrar; stopped after the test (or by ``stop``)."""

    def __init__(self) -> None:
        self.running: dict[int, object] = {}

    def __call__(self, url: str | None = None, **settings):
        toml = {"plugins": {"registrar": settings}, "server": {"timer_interval": 0.05}}
        if url is not None:
            toml["database"] = {"url": url}
        cm = inprocess_server(toml, plugins=[("registrar", RegistrarPlugin())])
        srv = cm.__enter__()
        self.running[id(srv)] = cm
        return srv

    def stop(self, srv) -> None:
        self.running.pop(id(srv)).__exit__(None, None, None)


def received(sock, quiet: float = 0.4) -> set[str]:
    """The methods of the requests arriving at ``sock`` until it stays quiet."""
    methods = set()
    sock.settimeout(quiet)
    try:
        while True:
            methods.add(parse_message(sock.recvfrom(65535)[0]).method)
    except TimeoutError:
        return methods


@pytest.fixture
def phones():
    """UDP sockets standing for registered phones, closed after the test."""
    made: list = []
    yield made
    for p in made:
        p.close()


@pytest.fixture
def server():
    servers = Servers()
    yield servers
    for cm in servers.running.values():
        cm.__exit__(None, None, None)


# ------------------------------------------------------------------ schema and packaging


def test_migration_round_trip(database_url):
    migration_round_trip(database_url, "registrar", Base.metadata)
    assert {c.name for c in location.columns} >= {
        "contact_id", "username", "domain", "contact", "received", "path", "expires", "q",
        "callid", "cseq", "last_modified", "flags", "cflags", "user_agent", "socket",
        "methods", "sip_instance", "kv_store", "attr",
    }


def test_wheel_carries_its_migrations_and_entry_point(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path), str(ROOT / "plugins" / "registrar")],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("sipline_registrar-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "sipline_registrar/migrations/0001_location.py" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    assert "[sipline.migrations]\nregistrar = sipline_registrar.migrations" in text


def test_row_round_trip_keeps_every_field():
    b = Binding(
        contact="sip:a@192.0.2.1:5070;transport=tcp", expires=1000.4, q=0.5, callid="c1",
        cseq=7, received="sip:198.51.100.7:40000", path=("<sip:e1@edge;lr>", "<sip:e2@x,y;lr>"),
        instance='"<urn:uuid:00000000-0000-0000-0000-000000000001>"', reg_id=2,
        user_agent="phone/1", socket="udp:127.0.0.1:5060", flags=frozenset({"NAT"}),
        created=990.0, methods=METHOD_BITS["INVITE"] | METHOD_BITS["BYE"],
    )
    row = to_row("alice@example.com", b.contact, b, 1e9, None)
    assert (row["username"], row["domain"], row["expires"]) == ("alice", "example.com", 1000001000)
    assert row["contact_id"] == contact_id("alice@example.com", b.contact) > 0
    aor, key, back = from_row(row, 1e9)
    assert (aor, key) == ("alice@example.com", b.contact)
    assert back == Binding(**{**{f: getattr(b, f) for f in b.__slots__}, "expires": 1000.0})


# ------------------------------------------------------------------ the storage modes


def test_write_through_writes_each_change_off_the_loop(database_url, server, sip_client):
    db.upgrade(database_url)
    srv = server(database_url, db_mode="write-through")
    c = sip_client(srv.address())
    ok = c.request(register(c, ["<sip:a@127.0.0.1:6001>;q=0.7"], expires=600,
                            extra="Allow: INVITE, ACK, BYE, CANCEL\r\nUser-Agent: phone/1\r\n"
                                  "Path: <sip:edge@127.0.0.1:7000;lr>"))
    assert ok.status == 200
    found = wait_for(lambda: rows(database_url))
    assert len(found) == 1
    row = found[0]
    assert (row["username"], row["domain"]) == ("alice", "127.0.0.1")
    assert (row["contact"], row["q"], row["cseq"]) == ("sip:a@127.0.0.1:6001", 0.7, 1)
    assert 590 <= row["expires"] - time.time() <= 601
    assert row["methods"] == sum(METHOD_BITS[m] for m in ("INVITE", "ACK", "BYE", "CANCEL"))
    assert row["user_agent"] == "phone/1"
    assert row["path"] == "<sip:edge@127.0.0.1:7000;lr>"
    assert row["socket"] == f"udp:127.0.0.1:{srv.address()[1]}"
    assert c.request(register(c, ["<sip:a@127.0.0.1:6001>"], expires=0)).status == 200
    assert wait_for(lambda: rows(database_url) == [])


def test_write_back_writes_on_its_interval_and_coalesces(database_url, server, sip_client):
    db.upgrade(database_url)
    srv = server(database_url, db_mode="write-back", write_back_interval=0.6)
    c = sip_client(srv.address())
    call_id = uuid.uuid4().hex
    for cseq in range(1, 6):  # five refreshes of one binding: one row
        assert c.request(register(c, ["<sip:a@127.0.0.1:6001>"], call_id=call_id,
                                  cseq=cseq)).status == 200
    assert rows(database_url) == []  # nothing written before the interval
    found = wait_for(lambda: rows(database_url), timeout=5)
    assert [(r["contact"], r["cseq"]) for r in found] == [("sip:a@127.0.0.1:6001", 5)]


def test_write_back_flushes_at_shutdown(database_url, server, sip_client):
    db.upgrade(database_url)
    srv = server(database_url, db_mode="write-back", write_back_interval=3600)
    c = sip_client(srv.address())
    assert c.request(register(c, ["<sip:a@127.0.0.1:6001>"])).status == 200
    assert rows(database_url) == []
    server.stop(srv)
    assert [r["contact"] for r in rows(database_url)] == ["sip:a@127.0.0.1:6001"]


@pytest.mark.parametrize("mode", ["write-through", "write-back", "sql-only"])
def test_bindings_are_loaded_at_startup(database_url, server, sip_client, mode):
    db.upgrade(database_url)
    engine = create_engine(database_url, poolclass=NullPool)
    now = time.time()
    live = Binding(contact="sip:a@127.0.0.1:6001", expires=now + 300, q=None, callid="x",
                   cseq=3, created=now)
    gone = Binding(contact="sip:a@127.0.0.1:6002", expires=now - 1, q=None, callid="x",
                   cseq=3, created=now)
    with engine.begin() as conn:
        apply_changes(conn, [("alice@127.0.0.1", live.contact, live),
                             ("alice@127.0.0.1", gone.contact, gone)], 0.0)
    engine.dispose()
    srv = server(database_url, db_mode=mode)
    c = sip_client(srv.address())
    fetched = c.request(register(c, []))
    assert contact_uris(fetched) == ["sip:a@127.0.0.1:6001"]
    assert 290 <= int(fetched.contacts[0].params["expires"]) <= 300
    # an older CSeq of the loaded binding's Call-ID is still refused
    stale = c.request(register(c, ["<sip:a@127.0.0.1:6001>"], call_id="x", cseq=2))
    assert stale.status == 500
    # the expired row was removed on load (sql-only: at the first expiry tick)
    assert wait_for(lambda: [r["contact"] for r in rows(database_url)] == [live.contact])


def test_sql_only_reads_and_writes_the_table(database_url, server, sip_client, phones):
    db.upgrade(database_url)
    srv = server(database_url, db_mode="sql-only")
    callee = phone()
    phones.append(callee)
    c = sip_client(srv.address())
    contact = f"<sip:a@127.0.0.1:{callee.getsockname()[1]}>"
    assert c.request(register(c, [contact], expires=300)).status == 200
    # committed before the 200 OK was sent: no waiting
    assert [r["cseq"] for r in rows(database_url)] == [1]
    c.send(invite(c))
    got = parse_message(callee.recvfrom(65535)[0])
    assert got.method == "INVITE"
    # another node's registration (written straight to the table) is seen at once
    now = time.time()
    other = Binding(contact="sip:bob@127.0.0.1:6009", expires=now + 60, q=None, callid="n2",
                    cseq=1, created=now)
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        apply_changes(conn, [("bob@127.0.0.1", other.contact, other)], 0.0)
    stats = srv.server.statistics
    assert stats["usrloc:registered_users"]["function"]() == 2
    assert stats["usrloc:contacts"]["function"]() == 2
    dump = srv.server.mi_commands["usrloc:dump"]["function"]()
    assert sorted(dump) == ["alice@127.0.0.1", "bob@127.0.0.1"]
    # expiry deletes rows in the table
    with engine.begin() as conn:
        conn.execute(location.update().where(location.c.username == "bob").values(expires=0))
    assert wait_for(lambda: len(rows(database_url)) == 1)
    with engine.begin() as conn:
        conn.execute(delete(location))
    engine.dispose()
    assert c.request(invite(c)).status == 404  # the table is the store


def test_sql_mode_without_the_table_fails_to_start_with_advice(sqlite_url):
    with pytest.raises(Exception, match=r"location table.*sipline db upgrade"):
        with inprocess_server({"database": {"url": sqlite_url},
                               "plugins": {"registrar": {"db_mode": "write-through"}}},
                              plugins=[("registrar", RegistrarPlugin())]):
            pass


# ------------------------------------------------------------------ method filtering


@pytest.mark.parametrize("mode", ["memory", "sql-only"])
def test_lookup_skips_bindings_whose_allow_excludes_the_method(sqlite_url, server, sip_client, phones, mode):
    if mode != "memory":
        db.upgrade(sqlite_url)
    srv = server(sqlite_url, db_mode=mode)
    voice, chat, anything = phone(), phone(), phone()
    phones.extend((voice, chat, anything))
    c = sip_client(srv.address())

    def contact(p, params=""):
        return f"<sip:a@127.0.0.1:{p.getsockname()[1]}>{params}"

    call_id = uuid.uuid4().hex
    assert c.request(register(c, [contact(voice)], call_id=call_id,
                              extra="Allow: INVITE, ACK, CANCEL, BYE")).status == 200
    # the Contact's methods feature parameter (RFC 3840) wins over Allow
    assert c.request(register(c, [contact(chat, ';methods="MESSAGE"')], cseq=2,
                              extra="Allow: INVITE, MESSAGE")).status == 200
    assert c.request(register(c, [contact(anything)], cseq=3)).status == 200  # no Allow
    c.send(request(c, "MESSAGE"))
    c.send(invite(c))
    got = {name: received(p) for name, p in
           (("voice", voice), ("chat", chat), ("anything", anything))}
    assert got == {"voice": {"INVITE"}, "chat": {"MESSAGE"}, "anything": {"INVITE", "MESSAGE"}}
    shown = srv.server.mi_commands["usrloc:show_contact"]["function"]("alice@127.0.0.1")
    assert {b["methods"] for b in shown} == {None, METHOD_BITS["MESSAGE"], 1 | 2 | 4 | 8}


def test_no_binding_allowing_the_method_is_not_found(server, sip_client):
    srv = server()
    c = sip_client(srv.address())
    assert c.request(register(c, ["<sip:a@127.0.0.1:6001>"], extra="Allow: INVITE")).status == 200
    assert c.request(request(c, "MESSAGE")).status == 404


# ------------------------------------------------------------------ the writer thread


def a_binding(contact: str) -> Binding:
    now = time.monotonic()
    return Binding(contact=contact, expires=now + 300, q=None, callid="w", cseq=1, created=now)


def test_writer_retries_in_order_while_the_table_is_missing(sqlite_url, caplog):
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    writer = SqlWriter(engine, time.monotonic)
    try:
        db.downgrade(sqlite_url, "registrar@base")
        writer.submit([("a@h", "sip:a@h", a_binding("sip:a@h"))])
        writer.submit([("a@h", "sip:a@h", None), ("b@h", "sip:b@h", a_binding("sip:b@h"))])
        assert wait_for(lambda: writer.failures >= 1)
        assert "retrying" in caplog.text
        db.upgrade(sqlite_url)
        assert writer.flush(timeout=20)
        assert [r["contact"] for r in rows(sqlite_url)] == ["sip:b@h"]  # in order: a went
    finally:
        writer.close()
        engine.dispose()


def test_writer_skips_a_row_the_database_refuses(postgresql_url, caplog):
    db.upgrade(postgresql_url)
    engine = db.make_engine(postgresql_url)
    writer = SqlWriter(engine, time.monotonic)
    try:
        too_long = "x" * 300 + "@h"  # over VARCHAR(255): PostgreSQL refuses the row
        writer.submit([(too_long, "sip:x@h", a_binding("sip:x@h")),
                       ("ok@h", "sip:ok@h", a_binding("sip:ok@h"))])
        assert writer.flush(timeout=20)
        assert [r["contact"] for r in rows(postgresql_url)] == ["sip:ok@h"]
        assert "not stored" in caplog.text
    finally:
        writer.close()
        engine.dispose()
