"""Self-verifying nonces with an injected clock, and bounded nonce-count replay protection."""

from __future__ import annotations

import re

from sipline_auth.nonce import (
    NONCE_LEN,
    CountState,
    NonceCounter,
    NonceFactory,
    NonceState,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_nonce_is_valid_until_it_expires():
    clock = Clock()
    f = NonceFactory(b"k" * 32, expires=300, clock=clock)
    nonce = f.make("example.com")
    assert len(nonce) == NONCE_LEN and re.fullmatch(r"[A-Za-z0-9_-]+", nonce)
    assert f.check(nonce, "example.com") == (NonceState.VALID, int(clock.now))
    clock.now += 300
    assert f.check(nonce, "example.com")[0] is NonceState.VALID
    clock.now += 1
    assert f.check(nonce, "example.com")[0] is NonceState.EXPIRED


def test_nonce_from_far_future_is_expired():
    clock = Clock()
    f = NonceFactory(b"k" * 32, expires=300, clock=clock)
    nonce = f.make("example.com")
    clock.now -= 3600  # issued an hour "after" now: another node's clock is off
    assert f.check(nonce, "example.com")[0] is NonceState.EXPIRED


def test_nonce_is_bound_to_secret_and_realm():
    clock = Clock()
    f = NonceFactory(b"k" * 32, expires=300, clock=clock)
    nonce = f.make("example.com")
    assert f.check(nonce, "example.org")[0] is NonceState.INVALID
    other = NonceFactory(b"x" * 32, expires=300, clock=clock)
    assert other.check(nonce, "example.com")[0] is NonceState.INVALID
    # a second node with the same secret accepts it
    twin = NonceFactory(b"k" * 32, expires=300, clock=clock)
    assert twin.check(nonce, "example.com")[0] is NonceState.VALID


def test_tampered_or_garbage_nonces_are_invalid():
    f = NonceFactory(b"k" * 32, expires=300, clock=Clock())
    nonce = f.make("r")
    flipped = ("A" if nonce[3] != "A" else "B").join((nonce[:3], nonce[4:]))
    for bad in (flipped, "", "x" * NONCE_LEN, "!" * NONCE_LEN, nonce[:-1], nonce + "A"):
        assert f.check(bad, "r")[0] is NonceState.INVALID, bad


def test_two_challenges_never_share_a_nonce():
    f = NonceFactory(b"k" * 32, expires=300, clock=Clock())
    assert len({f.make("r") for _ in range(1000)}) == 1000


def test_opaque_is_stable_per_realm():
    f = NonceFactory(b"k" * 32, expires=300)
    assert f.opaque("a") == f.opaque("a") != f.opaque("b")


def test_nonce_count_must_increase():
    c = NonceCounter(capacity=10)
    assert c.use("n1", 100, 1) is CountState.OK
    assert c.use("n1", 100, 1) is CountState.REPLAY
    assert c.use("n1", 100, 2) is CountState.OK
    assert c.use("n1", 100, 2) is CountState.REPLAY
    assert c.use("n1", 100, 1) is CountState.REPLAY
    assert c.use("n1", 100, 7) is CountState.OK  # gaps are fine (RFC 7616 §3.3)
    assert c.use("n2", 100, 1) is CountState.OK  # per nonce


def test_bounded_memory_never_lets_a_replay_through():
    c = NonceCounter(capacity=3)
    for i in range(3):
        assert c.use(f"n{i}", 100 + i, 1) is CountState.OK
    assert c.use("n3", 110, 1) is CountState.OK  # n0 (issued 100) is forgotten
    assert len(c) == 3
    # n0 cannot be told from a replay any more: refused, the client re-challenges
    assert c.use("n0", 100, 2) is CountState.FORGOTTEN
    assert c.use("n0", 100, 1) is CountState.FORGOTTEN
    # a nonce issued after the floor is new
    assert c.use("n4", 111, 1) is CountState.OK
    assert c.use("n1", 101, 1) is CountState.FORGOTTEN  # evicted by n4, issued before floor


def test_prune_forgets_expired_nonces():
    c = NonceCounter(capacity=100)
    for i in range(5):
        c.use(f"n{i}", 100 + i, 1)
    assert c.prune(oldest_valid=103) == 3
    assert len(c) == 2
    assert c.use("n3", 103, 1) is CountState.REPLAY  # still remembered


def test_a_retransmission_is_not_a_replay():
    c = NonceCounter(capacity=10)
    assert c.use("n1", 100, 1, txn=11) is CountState.OK
    assert c.use("n1", 100, 1, txn=11) is CountState.OK  # the same transaction again
    assert c.use("n1", 100, 1, txn=12) is CountState.REPLAY  # another one: a replay
    assert c.use("n1", 100, 1) is CountState.REPLAY  # transaction unknown
    assert c.use("n1", 100, 2, txn=12) is CountState.OK
    assert c.use("n1", 100, 1, txn=11) is CountState.REPLAY  # an older count, even if known
