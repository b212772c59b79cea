"""The auth plugin in a real in-process server with the registrar, over loopback UDP.

Subscribers live in a real SQLite file; requests come from raw sockets; the
client side computes digests with :mod:`authkit` (independent of the plugin).
"""

from __future__ import annotations

import socket
import time
import types
import uuid

import pytest
from authkit import authorization, challenges, invite, pick, register
from sipline import db
from sipline.hooks import hookimpl
from sipline.sip import parse_message
from sipline.testing import SipClient, inprocess_server
from sipline_auth.cli import add_user, set_password
from sipline_auth.config import AuthConfig
from sipline_auth.plugin import AuthPlugin
from sipline_registrar.plugin import RegistrarPlugin
from sqlalchemy import create_engine

SECRET = "a test secret, 32 characters ok"
USERS = (("alice", "wonderland"), ("bob", "builder"))


class Env:
    def __init__(self, srv, plugin: AuthPlugin, url: str) -> None:
        self.srv = srv
        self.plugin = plugin
        self.url = url
        self.host, self.port = srv.address()
        self.hostport = f"{self.host}:{self.port}"
        self.clients: list[SipClient] = []

    def client(self) -> SipClient:
        c = SipClient((self.host, self.port))
        self.clients.append(c)
        return c

    def engine(self):
        return create_engine(self.url)

    def register(self, user: str, password: str, contact: str | None = None,
                 algorithm: str = "SHA-256") -> tuple:
        c = self.client()
        call_id = uuid.uuid4().hex
        first = c.request(register(self.hostport, c.local_hostport, user, call_id=call_id,
                                   contact=contact))
        assert first.status == 401, first
        creds = authorization(pick(first, algorithm), "REGISTER", f"sip:{self.hostport}",
                              user, password)
        second = c.request(register(self.hostport, c.local_hostport, user, call_id=call_id,
                                    cseq=2, contact=contact, auth=creds))
        return first, second


@pytest.fixture
def start(tmp_path):
    made = []

    def start(settings: dict | None = None, *, order=("registrar", "auth"), script=None,
              users=USERS) -> Env:
        url = f"sqlite:///{tmp_path / 'sipline.db'}"
        db.upgrade(url, "auth@head")  # what `sipline db upgrade` does before the server runs
        engine = create_engine(url)
        cfg = AuthConfig(secret=SECRET)
        for user, password in users:
            add_user(engine, user, "127.0.0.1", password, cfg)
        engine.dispose()
        plugin = AuthPlugin()
        objects = {"auth": plugin, "registrar": RegistrarPlugin()}
        toml = {
            "database": {"url": url},
            "plugins": {"auth": {"secret": SECRET, **(settings or {})}, "registrar": {}},
        }
        cm = inprocess_server(toml, plugins=[(n, objects[n]) for n in order], script=script)
        env = Env(cm.__enter__(), plugin, url)
        made.append((cm, env))
        return env

    yield start
    for cm, env in made:
        for c in env.clients:
            c.close()
        cm.__exit__(None, None, None)


def callee() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def test_register_is_challenged_with_401_then_accepted_by_the_registrar(start):
    env = start()
    first, second = env.register("alice", "wonderland")
    assert [c["algorithm"] for c in challenges(first)] == ["SHA-256", "SHA-512-256", "MD5"]
    assert {c["realm"] for c in challenges(first)} == {"127.0.0.1"}
    assert second.status == 200
    assert [str(c.uri) for c in second.contacts] == [f"sip:alice@{env.clients[0].local_hostport}"]


def test_retransmission_of_an_authenticated_request_is_not_a_replay(start):
    # A request answered locally is answered statelessly: each UDP retransmission
    # goes through the route stages again, and must not be taken for a replay.
    def route_request(ctx):
        if ctx.msg.method != "MESSAGE":
            return None
        result = ctx.auth.check()
        return ctx.reply(200, "delivered") if result else result.reply

    script = types.SimpleNamespace(route_request=hookimpl(tryfirst=True)(route_request))
    env = start(script=script)
    c = env.client()
    call_id = uuid.uuid4().hex
    first = c.request(invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id)
                      .replace(b"INVITE", b"MESSAGE"))
    assert first.status == 407
    creds = authorization(pick(first), "MESSAGE", f"sip:bob@{env.hostport}", "alice",
                          "wonderland")
    data = invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id, cseq=2,
                  auth=creds).replace(b"INVITE", b"MESSAGE")
    assert c.request(data).status == 200
    assert c.request(data).status == 200  # the same transaction again
    replay = data.replace(b";branch=z9hG4bK", b";branch=z9hG4bKr", 1)
    assert c.request(replay).status == 407  # a new transaction with a used count


def test_md5_and_sha512_256_are_accepted_too(start):
    env = start()
    assert env.register("alice", "wonderland", algorithm="MD5")[1].status == 200
    assert env.register("bob", "builder", algorithm="SHA-512-256")[1].status == 200


def test_wrong_password_gets_401_again(start):
    env = start()
    first, second = env.register("alice", "guess")
    assert second.status == 401
    assert not any("stale" in c for c in challenges(second))
    assert pick(second)["nonce"] != pick(first)["nonce"]


def test_invite_is_challenged_with_407_and_relayed_once_authenticated(start):
    env = start()
    phone = callee()
    try:
        contact = f"<sip:bob@127.0.0.1:{phone.getsockname()[1]}>"
        assert env.register("bob", "builder", contact=contact)[1].status == 200
        c = env.client()
        call_id = uuid.uuid4().hex
        first = c.request(invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id))
        assert first.status == 407
        assert first.get_all("WWW-Authenticate") == []
        assert len(first.get_all("Proxy-Authenticate")) == 3
        creds = authorization(pick(first), "INVITE", f"sip:bob@{env.hostport}", "alice",
                              "wonderland")
        c.send(invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id, cseq=2,
                      auth=creds))
        got = parse_message(phone.recvfrom(65535)[0])
        assert got.method == "INVITE" and got.get("call-id") == call_id
        assert got.get("Proxy-Authorization") is None  # consumed before relaying
    finally:
        phone.close()


def test_auth_runs_before_the_registrar_whatever_the_order(start):
    env = start(order=("auth", "registrar"))
    assert env.register("alice", "wonderland")[1].status == 200
    c = env.client()
    plain = c.request(register(env.hostport, c.local_hostport, "alice"))
    assert plain.status == 401


def test_trusted_source_is_not_challenged(start):
    env = start({"trusted": ["10.0.0.0/8", "127.0.0.0/8"]})
    c = env.client()
    assert c.request(register(env.hostport, c.local_hostport, "alice")).status == 200


def test_requests_from_foreign_domains_are_not_challenged(start):
    env = start()
    phone = callee()
    try:
        contact = f"<sip:bob@127.0.0.1:{phone.getsockname()[1]}>"
        assert env.register("bob", "builder", contact=contact)[1].status == 200
        c = env.client()
        c.send(invite(env.hostport, c.local_hostport, "carol", "bob", from_domain="example.org"))
        assert parse_message(phone.recvfrom(65535)[0]).method == "INVITE"
    finally:
        phone.close()


def test_ack_and_cancel_are_never_challenged(start):
    env = start()
    c = env.client()
    data = invite(env.hostport, c.local_hostport, "alice", "bob").replace(b"INVITE", b"CANCEL")
    assert c.request(data).status == 481  # the core's "no such transaction", not 407
    ack = invite(env.hostport, c.local_hostport, "alice", "bob").replace(b"INVITE", b"ACK")
    c.send(ack)
    assert c.expect_silence(0.3)


def test_methods_setting_limits_what_is_challenged(start):
    env = start({"methods": ["REGISTER"]})
    c = env.client()
    assert c.request(invite(env.hostport, c.local_hostport, "alice", "bob")).status == 404
    assert c.request(register(env.hostport, c.local_hostport, "alice")).status == 401


def test_from_must_match_the_authenticated_user(start):
    env = start()
    c = env.client()
    call_id = uuid.uuid4().hex
    first = c.request(invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id))
    creds = authorization(pick(first), "INVITE", f"sip:bob@{env.hostport}", "bob", "builder")
    second = c.request(invite(env.hostport, c.local_hostport, "alice", "bob", call_id=call_id,
                              cseq=2, auth=creds))
    assert (second.status, second.reason) == (403, "Forbidden auth ID")


def test_stale_nonce_gets_stale_true_then_works(start):
    env = start()
    c = env.client()
    call_id = uuid.uuid4().hex
    first = c.request(register(env.hostport, c.local_hostport, "alice", call_id=call_id))
    creds = authorization(pick(first), "REGISTER", f"sip:{env.hostport}", "alice", "wonderland")
    nonces = env.plugin.auth.nonces
    nonces.clock = lambda: time.time() + 301  # the nonce is now older than nonce_expires
    stale = c.request(register(env.hostport, c.local_hostport, "alice", call_id=call_id, cseq=2,
                               auth=creds))
    assert stale.status == 401
    assert all(ch.get("stale") == "true" for ch in challenges(stale))
    creds = authorization(pick(stale), "REGISTER", f"sip:{env.hostport}", "alice", "wonderland")
    ok = c.request(register(env.hostport, c.local_hostport, "alice", call_id=call_id, cseq=3,
                            auth=creds))
    assert ok.status == 200


def test_user_added_while_running_is_known_at_once(start):
    # no periodic reload: the lookup of a user missing from memory does it
    env = start({"reload_interval": 0, "lookup_interval": 0.3})
    engine = env.engine()
    add_user(engine, "carol", "127.0.0.1", "secret", AuthConfig())
    assert env.register("carol", "secret")[1].status == 200
    # a changed password: a mismatch looks the user up again, at most once per
    # lookup_interval (carol was just looked up)
    set_password(engine, "carol", "127.0.0.1", "newer", AuthConfig())
    engine.dispose()
    time.sleep(0.3)
    assert env.register("carol", "newer")[1].status == 200


def test_routing_script_uses_the_script_api(start):
    def route_request(ctx):
        if ctx.msg.method != "MESSAGE":
            return None

        async def answer():
            result = await ctx.auth.check_async()
            if not result:
                return result.reply
            return ctx.reply(200, f"hello {ctx.auth.user} ({result.outcome.value})")

        return answer()

    script = types.SimpleNamespace(route_request=hookimpl(tryfirst=True)(route_request))
    env = start({"default_route": False}, script=script)
    c = env.client()
    msg = invite(env.hostport, c.local_hostport, "alice", "bob").replace(b"INVITE", b"MESSAGE")
    first = c.request(msg)
    assert first.status == 407
    creds = authorization(pick(first), "MESSAGE", f"sip:bob@{env.hostport}", "alice",
                          "wonderland")
    msg = invite(env.hostport, c.local_hostport, "alice", "bob", auth=creds)
    ok = c.request(msg.replace(b"INVITE", b"MESSAGE"))
    assert (ok.status, ok.reason) == (200, "hello alice (ok)")
    # default_route = false: nothing else is challenged
    assert c.request(register(env.hostport, c.local_hostport, "bob")).status == 200


def test_statistics(start):
    env = start()
    env.register("alice", "wonderland")
    env.register("alice", "guess")
    stats = {name: meta["function"]() for name, meta in env.srv.server.statistics.items()
             if name.startswith("auth:")}
    assert stats["auth:challenges"] == 3
    assert stats["auth:authenticated"] == 1
    assert stats["auth:failed"] == 1
    assert stats["auth:subscribers"] == 2
