"""The registrar plugin against a real in-process server over loopback UDP (RFC 3261 §10)."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from sipline.sip import make_response, parse_message
from sipline.testing import SipClient, inprocess_server
from sipline_registrar.plugin import RegistrarPlugin


@pytest.fixture
def server():
    made = []

    def start(settings: dict | None = None, server_cfg: dict | None = None):
        toml = {"server": dict(server_cfg or {}), "plugins": {"registrar": settings or {}}}
        cm = inprocess_server(toml, plugins=[("registrar", RegistrarPlugin())])
        srv = cm.__enter__()
        made.append(cm)
        return srv

    yield start
    for cm in made:
        cm.__exit__(None, None, None)


def register(client: SipClient, contacts: list[str], *, user: str = "alice", expires: int | None = None,
             call_id: str | None = None, cseq: int = 1, extra: str = "") -> bytes:
    host, port = client.server
    lines = [
        f"REGISTER sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:10]};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{host}>;tag={uuid.uuid4().hex[:6]}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if extra:
        lines.append(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def invite(client: SipClient, user: str = "alice") -> bytes:
    host, port = client.server
    return (
        f"INVITE sip:{user}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:10]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bob@{host}>;tag=b1\r\nTo: <sip:{user}@{host}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:bob@{client.local_hostport}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def contact_uris(resp) -> list[str]:
    return [str(c.uri) for c in resp.contacts]


def phone() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def test_register_binds_and_lists_contacts_best_q_first(server):
    srv = server()
    c = SipClient(srv.address())
    resp = c.request(register(c, ["<sip:a@127.0.0.1:6001>;q=0.5", "<sip:a@127.0.0.1:6002>;q=0.9"]))
    assert resp.status == 200
    assert contact_uris(resp) == ["sip:a@127.0.0.1:6002", "sip:a@127.0.0.1:6001"]
    assert [c.params["expires"] for c in resp.contacts] == ["3600", "3600"]
    assert resp.has("Date")
    # a fetch (no Contact) lists the bindings without changing them
    assert contact_uris(c.request(register(c, []))) == ["sip:a@127.0.0.1:6002", "sip:a@127.0.0.1:6001"]
    c.close()


def test_expires_rules(server):
    srv = server({"min_expires": 60, "max_expires": 7200})
    c = SipClient(srv.address())
    short = c.request(register(c, ["<sip:a@127.0.0.1:6001>"], expires=30))
    assert (short.status, short.get("Min-Expires")) == (423, "60")
    capped = c.request(register(c, ["<sip:a@127.0.0.1:6001>;expires=99999"]))
    assert capped.contacts[0].params["expires"] == "7200"
    removed = c.request(register(c, ["<sip:a@127.0.0.1:6001>"], expires=0))
    assert removed.status == 200 and removed.contacts == []
    c.close()


def test_contact_star(server):
    srv = server()
    c = SipClient(srv.address())
    c.request(register(c, ["<sip:a@127.0.0.1:6001>", "<sip:a@127.0.0.1:6002>"]))
    assert c.request(register(c, ["*"], expires=60)).status == 400
    assert c.request(register(c, ["*"])).status == 400
    gone = c.request(register(c, ["*"], expires=0))
    assert gone.status == 200 and gone.contacts == []
    c.close()


def test_older_cseq_never_overwrites(server):
    srv = server()
    c = SipClient(srv.address())
    call_id = uuid.uuid4().hex
    assert c.request(register(c, ["<sip:a@127.0.0.1:6001>;q=0.7"], call_id=call_id, cseq=5)).status == 200
    stale = c.request(register(c, ["<sip:a@127.0.0.1:6001>"], call_id=call_id, cseq=4, expires=0))
    assert stale.status == 500
    still = c.request(register(c, []))
    assert contact_uris(still) == ["sip:a@127.0.0.1:6001"]
    assert c.request(register(c, ["<sip:a@127.0.0.1:6001>"], call_id=call_id, cseq=6, expires=0)).status == 200
    c.close()


def test_retransmitted_register_gets_the_same_answer_but_a_replay_fails(server):
    """A retransmission (same branch) is answered again; the same CSeq in a new
    transaction is out of order (RFC 3261 §10.3 step 7)."""
    srv = server()
    c = SipClient(srv.address())
    call_id = uuid.uuid4().hex
    first = register(c, ["<sip:a@127.0.0.1:6001>"], call_id=call_id, cseq=5, expires=600)
    assert c.request(first).status == 200
    again = c.request(first)  # the very same datagram: its 200 was lost
    assert again.status == 200 and contact_uris(again) == ["sip:a@127.0.0.1:6001"]
    replay = register(c, ["<sip:a@127.0.0.1:6001>"], call_id=call_id, cseq=5, expires=0)
    assert c.request(replay).status == 500
    assert contact_uris(c.request(register(c, []))) == ["sip:a@127.0.0.1:6001"]
    c.close()


@pytest.mark.parametrize(("policy", "status", "kept"), [
    ("reject", 503, ["sip:a@127.0.0.1:6001", "sip:a@127.0.0.1:6002"]),
    ("evict", 200, ["sip:a@127.0.0.1:6002", "sip:a@127.0.0.1:6003"]),
])
def test_max_contacts(server, policy, status, kept):
    srv = server({"max_contacts": 2, "max_contacts_policy": policy})
    c = SipClient(srv.address())
    c.request(register(c, ["<sip:a@127.0.0.1:6001>"]))
    time.sleep(0.01)
    c.request(register(c, ["<sip:a@127.0.0.1:6002>"]))
    third = c.request(register(c, ["<sip:a@127.0.0.1:6003>"]))
    assert third.status == status
    assert sorted(contact_uris(c.request(register(c, [])))) == kept
    c.close()


def test_non_sip_aor_is_400(server):
    srv = server()
    c = SipClient(srv.address())
    data = register(c, ["<sip:a@127.0.0.1:6001>"]).replace(b"To: <sip:alice@127.0.0.1", b"To: <isbn:2983792873")
    data = data.replace(b":" + str(c.server[1]).encode() + b">\r\nCall-ID", b">\r\nCall-ID", 1)
    assert c.request(data).status == 400
    c.close()


def test_path_is_echoed_and_used_as_destination(server):
    srv = server()
    edge = phone()
    c = SipClient(srv.address())
    path = f"<sip:edge@127.0.0.1:{edge.getsockname()[1]};lr>"
    ok = c.request(register(c, ["<sip:a@10.255.255.1:5060>"], extra=f"Path: {path}"))
    assert ok.get("Path") == path and "path" in ok.get_list("Supported")
    c.send(invite(c))
    data, _ = edge.recvfrom(65535)  # the INVITE goes to the Path hop, not the Contact
    got = parse_message(data)
    assert got.method == "INVITE" and got.raw_uri == "sip:a@10.255.255.1:5060"
    c.close()
    edge.close()


def test_lookup_relays_to_every_binding_in_parallel(server):
    srv = server()
    p1, p2 = phone(), phone()
    c = SipClient(srv.address())
    uris = [f"<sip:a@127.0.0.1:{p.getsockname()[1]}>;q={q}" for p, q in ((p1, 0.4), (p2, 0.8))]
    assert c.request(register(c, uris)).status == 200
    c.send(invite(c))
    seen = []
    for p in (p1, p2):
        data, addr = p.recvfrom(65535)
        msg = parse_message(data)
        seen.append(msg.raw_uri)
        p.sendto(make_response(msg, 486, to_tag="busy").to_bytes(), addr)
    assert len(seen) == 2
    final = None
    while final is None:
        m = parse_message(c.recv(3))
        final = m if m.status >= 200 else None
    assert final.status == 486
    # nobody registered: 404 from the default script
    assert c.request(invite(c, user="nobody")).status == 404
    c.close()
    p1.close()
    p2.close()


def test_redirect_mode_answers_302_best_q_first(server):
    srv = server({"redirect": True})
    c = SipClient(srv.address())
    c.request(register(c, ["<sip:a@127.0.0.1:6001>;q=0.2", "<sip:a@127.0.0.1:6002>;q=0.9"]))
    resp = c.request(invite(c))
    assert resp.status == 302
    assert contact_uris(resp) == ["sip:a@127.0.0.1:6002", "sip:a@127.0.0.1:6001"]
    c.close()


def test_bindings_expire_on_the_timer(server):
    srv = server({"min_expires": 0}, {"timer_interval": 0.05})
    c = SipClient(srv.address())
    c.request(register(c, ["<sip:a@127.0.0.1:6001>;expires=1"]))
    assert srv.server.statistics["usrloc:contacts"]["function"]() == 1
    deadline = time.monotonic() + 5
    while srv.server.statistics["usrloc:contacts"]["function"]() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.server.statistics["usrloc:contacts"]["function"]() == 0
    assert c.request(invite(c)).status == 404
    c.close()


def test_register_for_a_foreign_domain_is_not_ours(server):
    srv = server()
    c = SipClient(srv.address())
    data = register(c, ["<sip:a@127.0.0.1:6001>"]).replace(
        f"REGISTER sip:{c.server[0]}:{c.server[1]}".encode(), b"REGISTER sip:elsewhere.example"
    )
    assert c.request(data).status == 403  # relay forbidden by the default script
    assert srv.server.statistics["registrar:accepted_regs"]["function"]() == 0
    c.close()


def test_nat_received_reaches_the_registering_address(server):
    srv = server({"nat_received": True})
    nat = phone()  # the phone's real address; its Contact names a private one
    c = SipClient(srv.address())
    data = register(c, ["<sip:a@10.255.255.1:5060>"]).replace(
        c.local_hostport.encode(), f"127.0.0.1:{nat.getsockname()[1]}".encode()
    )
    nat.sendto(data, c.server)
    assert parse_message(nat.recvfrom(65535)[0]).status == 200
    c.send(invite(c))
    got = parse_message(nat.recvfrom(65535)[0])
    assert got.method == "INVITE" and got.raw_uri == "sip:a@10.255.255.1:5060"
    c.close()
    nat.close()


def test_usrloc_mi_commands_are_registered_and_work(server):
    srv = server()
    commands = srv.server.mi_commands
    assert {commands[n]["alias"] for n in commands if n.startswith("usrloc:")} == {
        "ul_show_contact", "ul_dump", "ul_rm", "ul_rm_contact", "ul_add"
    }
    c = SipClient(srv.address())
    c.request(register(c, ["<sip:a@127.0.0.1:6001>;q=0.3"], expires=600))
    aor = f"alice@{c.server[0]}"
    shown = commands["usrloc:show_contact"]["function"](aor)
    assert [(b["contact"], b["q"]) for b in shown] == [("sip:a@127.0.0.1:6001", 0.3)]
    assert 590 <= shown[0]["expires"] <= 600
    assert commands["usrloc:add"]["function"](aor, "sip:a@127.0.0.1:6009", 300, 0.9)
    assert list(commands["usrloc:dump"]["function"]()) == [aor]
    assert contact_uris(c.request(register(c, []))) == ["sip:a@127.0.0.1:6009", "sip:a@127.0.0.1:6001"]
    assert commands["usrloc:rm_contact"]["function"](aor, "sip:a@127.0.0.1:6009") is True
    assert commands["usrloc:rm"]["function"](aor) == 1
    assert commands["usrloc:show_contact"]["function"](aor) == []
    c.close()


def test_is_registered_in_a_routing_script(tmp_path):
    from sipline.routing.script import load_script

    path = tmp_path / "routes.py"
    path.write_text(
        "from sipline.routing.actions import Reply\n"
        "def route_request(ctx):\n"
        "    if ctx.msg.method == 'INVITE':\n"
        "        ruri = ctx.registrar.is_registered()\n"
        "        named = ctx.registrar.is_registered(f'alice@{ctx.msg.uri.host}')\n"
        "        return Reply(480, 'Seen', (('X-Registered', f'{ruri} {named}'),))\n"
    )
    with inprocess_server({"plugins": {"registrar": {}}},
                          plugins=[("registrar", RegistrarPlugin())],
                          script=load_script(path)) as srv:
        c = SipClient(srv.address())
        assert c.request(invite(c)).get("X-Registered") == "False False"
        p = phone()
        assert c.request(register(c, [f"<sip:a@127.0.0.1:{p.getsockname()[1]}>"])).status == 200
        assert c.request(invite(c)).get("X-Registered") == "True True"
        assert c.request(invite(c, user="bob")).get("X-Registered") == "False True"
        c.close()
        p.close()
