"""The Authenticator on parsed requests, with subscribers in a real SQLite file and an injected clock."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from authkit import authorization, challenges, invite, masked, pick, register
from sipline.db import upgrade
from sipline.sip import parse_message
from sipline_auth.authenticator import Authenticator, Outcome, consume_credentials
from sipline_auth.cli import add_user
from sipline_auth.config import AuthConfig
from sipline_auth.nonce import NonceCounter, NonceFactory
from sipline_auth.store import SubscriberStore, load_account, load_accounts
from sqlalchemy import create_engine

HOST = "127.0.0.1:5060"
DOMAIN = "127.0.0.1"
LOCAL = "127.0.0.1:40000"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade(url, "auth@head")
    engine = create_engine(url)
    yield engine
    engine.dispose()


def make_auth(engine, clock=None, **settings):
    cfg = AuthConfig(secret="s" * 32, **settings)
    for user, password in (("alice", "wonderland"), ("bob", "builder")):
        add_user(engine, user, DOMAIN, password, cfg)
    executor = ThreadPoolExecutor(1)
    store = SubscriberStore(partial(load_accounts, engine), partial(load_account, engine),
                            executor)
    asyncio.run(store.reload())
    executor.shutdown()
    nonces = NonceFactory(cfg.secret.encode(), cfg.nonce_expires, clock=clock or Clock())
    return Authenticator(cfg, store, nonces, NonceCounter(cfg.nc_cache_size))


def req(data: bytes):
    return parse_message(data)


def answer(auth, first, user="alice", password="wonderland", *, algorithm="SHA-256",
           nc=1, method="REGISTER", **kw):
    """Send a challengeable request, then the answer to its challenge."""
    result = auth.check(req(first))
    assert result.outcome is Outcome.NO_CREDENTIALS
    resp = parse_message(_wire(result.reply, first))
    ch = pick(resp, algorithm)
    uri = f"sip:{HOST}" if method == "REGISTER" else f"sip:bob@{HOST}"
    return ch, authorization(ch, method, uri, user, password, nc=nc, **kw)


def _wire(reply, request: bytes) -> bytes:
    """The reply as the core would send it (for parsing its headers)."""
    from sipline.sip import make_response

    return make_response(parse_message(request), reply.status, reply.reason,
                         to_tag="t", headers=list(reply.headers)).to_bytes()


def test_register_challenge_lists_algorithms_in_order(engine):
    auth = make_auth(engine)
    result = auth.check(req(register(HOST, LOCAL, "alice")))
    assert not result and result.outcome is Outcome.NO_CREDENTIALS
    assert result.reply.status == 401
    resp = parse_message(_wire(result.reply, register(HOST, LOCAL, "alice")))
    chs = challenges(resp)
    assert [c["algorithm"] for c in chs] == ["SHA-256", "SHA-512-256", "MD5"]
    assert {c["realm"] for c in chs} == {DOMAIN}
    assert all(c["qop"] == "auth" and c["opaque"] and "stale" not in c for c in chs)


@pytest.mark.parametrize("algorithm", ["SHA-256", "SHA-512-256", "MD5"])
def test_each_algorithm_authenticates(engine, algorithm):
    auth = make_auth(engine)
    _, creds = answer(auth, register(HOST, LOCAL, "alice"), algorithm=algorithm)
    result = auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))
    assert result and result.username == "alice" and result.domain == DOMAIN


def test_invite_is_challenged_with_407_and_proxy_authorization(engine):
    auth = make_auth(engine)
    first = invite(HOST, LOCAL, "alice", "bob")
    result = auth.check(req(first))
    assert result.reply.status == 407
    assert {h for h, _ in result.reply.headers} == {"Proxy-Authenticate"}
    _, creds = answer(auth, first, method="INVITE")
    msg = req(invite(HOST, LOCAL, "alice", "bob", auth=creds,
                     extra='Proxy-Authorization: Digest username="x", realm="elsewhere", '
                           'nonce="n", uri="sip:x", response="00"'))
    ok = auth.check(msg)
    assert ok
    # consume_credentials removes ours, keeps the other realm's
    assert consume_credentials(msg, ok)
    assert [v for v in msg.get_all("Proxy-Authorization")] == [
        'Digest username="x", realm="elsewhere", nonce="n", uri="sip:x", response="00"']


def test_stale_only_when_the_password_is_right(engine):
    clock = Clock()
    auth = make_auth(engine, clock, nonce_expires=300)
    _, good = answer(auth, register(HOST, LOCAL, "alice"))
    _, bad = answer(auth, register(HOST, LOCAL, "alice"), password="guess")
    clock.now += 301
    stale = auth.check(req(register(HOST, LOCAL, "alice", auth=good)))
    assert stale.outcome is Outcome.STALE
    assert all("stale=true" in v for _, v in stale.reply.headers)
    wrong = auth.check(req(register(HOST, LOCAL, "alice", auth=bad)))
    assert wrong.outcome is Outcome.WRONG
    assert not any("stale" in v for _, v in wrong.reply.headers)
    # the fresh nonce of the stale challenge works
    resp = parse_message(_wire(stale.reply, register(HOST, LOCAL, "alice")))
    creds = authorization(pick(resp), "REGISTER", f"sip:{HOST}", "alice", "wonderland")
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))


def test_nonce_count_replay_is_refused(engine):
    auth = make_auth(engine)
    ch, creds = answer(auth, register(HOST, LOCAL, "alice"))
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))
    replay = auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))
    assert replay.outcome is Outcome.REPLAY and replay.reply.status == 401
    assert not any("stale" in v for _, v in replay.reply.headers)
    # the same nonce with the next count is fine, and an older count is not
    nc2 = authorization(ch, "REGISTER", f"sip:{HOST}", "alice", "wonderland", nc=2)
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=nc2)))
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=nc2))).outcome is Outcome.REPLAY


def test_retransmission_is_not_a_replay(engine):
    auth = make_auth(engine)
    _, creds = answer(auth, register(HOST, LOCAL, "alice"))
    data = register(HOST, LOCAL, "alice", auth=creds)
    assert auth.check(req(data))
    assert auth.check(req(data))  # UDP retransmission: same branch, Call-ID, CSeq
    other_branch = data.replace(b";branch=z9hG4bK", b";branch=z9hG4bKx", 1)
    assert auth.check(req(other_branch)).outcome is Outcome.REPLAY


def test_wrong_credentials_do_not_burn_the_nonce_count(engine):
    auth = make_auth(engine)
    ch, _ = answer(auth, register(HOST, LOCAL, "alice"))
    forged = authorization(ch, "REGISTER", f"sip:{HOST}", "alice", "guess", nc=0xFFFFFFFF)
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=forged))).outcome is Outcome.WRONG
    good = authorization(ch, "REGISTER", f"sip:{HOST}", "alice", "wonderland", nc=1)
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=good)))


def test_unknown_user_and_wrong_password_look_the_same(engine):
    auth = make_auth(engine)
    _, wrong = answer(auth, register(HOST, LOCAL, "alice"), password="guess")
    _, unknown = answer(auth, register(HOST, LOCAL, "mallory"), user="mallory",
                        password="guess")
    a = auth.check(req(register(HOST, LOCAL, "alice", auth=wrong)))
    b = auth.check(req(register(HOST, LOCAL, "mallory", auth=unknown)))
    assert a.outcome is b.outcome is Outcome.WRONG
    wire_a = parse_message(_wire(a.reply, register(HOST, LOCAL, "alice")))
    wire_b = parse_message(_wire(b.reply, register(HOST, LOCAL, "mallory")))
    assert masked(wire_a) == masked(wire_b)


def test_authenticated_user_must_match_from(engine):
    auth = make_auth(engine)
    first = invite(HOST, LOCAL, "alice", "bob")
    _, bobs = answer(auth, first, user="bob", password="builder", method="INVITE")
    result = auth.check(req(invite(HOST, LOCAL, "alice", "bob", auth=bobs)))
    assert result.outcome is Outcome.FORBIDDEN and result.reply.status == 403
    lax = make_auth_again(engine, check_from=False)
    first = invite(HOST, LOCAL, "alice", "bob")
    _, bobs = answer(lax, first, user="bob", password="builder", method="INVITE")
    assert lax.check(req(invite(HOST, LOCAL, "alice", "bob", auth=bobs))).username == "bob"


def make_auth_again(engine, **settings):
    cfg = AuthConfig(secret="s" * 32, **settings)
    executor = ThreadPoolExecutor(1)
    store = SubscriberStore(partial(load_accounts, engine), partial(load_account, engine),
                            executor)
    asyncio.run(store.reload())
    executor.shutdown()
    return Authenticator(cfg, store, NonceFactory(cfg.secret.encode(), 300),
                         NonceCounter(100))


def test_algorithm_not_offered_is_refused(engine):
    auth = make_auth(engine, algorithms=["SHA-256"])
    first = register(HOST, LOCAL, "alice")
    result = auth.check(req(first))
    resp = parse_message(_wire(result.reply, first))
    ch = dict(pick(resp, "SHA-256"), algorithm="MD5")
    creds = authorization(ch, "REGISTER", f"sip:{HOST}", "alice", "wonderland")
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds))).outcome is Outcome.MALFORMED


def test_credentials_without_qop_work_once(engine):
    auth = make_auth(engine)
    _, creds = answer(auth, register(HOST, LOCAL, "alice"), qop=None)
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds))).outcome is Outcome.REPLAY


def test_configured_realm_is_used_for_challenge_and_ha1(engine):
    auth = make_auth(engine, realm="sipline.test")
    ch, creds = answer(auth, register(HOST, LOCAL, "alice"))
    assert ch["realm"] == "sipline.test"
    assert auth.check(req(register(HOST, LOCAL, "alice", auth=creds)))


def test_lookup_is_named_for_a_user_not_in_memory(engine):
    auth = make_auth(engine)
    result = auth.check(req(register(HOST, LOCAL, "carol")))
    assert result.lookup == ("carol", DOMAIN)
    known = auth.check(req(register(HOST, LOCAL, "alice")))
    assert known.lookup is None
