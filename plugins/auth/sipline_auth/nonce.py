"""Self-verifying nonces and nonce-count replay protection.

A nonce carries its own proof of origin, so no table of issued nonces is kept
and every worker (or node) sharing the secret accepts the nonces of the others:

    nonce = base64url( issued (4 bytes, big-endian Unix seconds)
                     | salt   (8 random bytes: two challenges never share a nonce)
                     | HMAC-SHA-256(secret, "nonce" | issued | salt | realm)[:16] )

38 characters, all from the base64url alphabet (safe inside a quoted-string).
Binding the realm means a nonce issued for one domain is useless for another.

Replay protection (RFC 7616 §3.3, nonce-count) needs memory; it is bounded by
:class:`NonceCounter` and is per process.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

_ISSUED = struct.Struct(">I")
_SALT_LEN = 8
_MAC_LEN = 16
_RAW_LEN = _ISSUED.size + _SALT_LEN + _MAC_LEN
NONCE_LEN = len(base64.urlsafe_b64encode(b"\0" * _RAW_LEN).rstrip(b"="))
#: Nonces issued this far in the future are still accepted (clock skew between nodes).
FUTURE_SKEW = 30.0


class NonceState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"  # not ours: bad MAC, another realm, another secret, garbage


class NonceFactory:
    """Issues and verifies nonces for a secret; ``clock`` returns Unix time (injectable)."""

    def __init__(
        self, secret: bytes, expires: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ValueError("the nonce secret must not be empty")
        self._secret = secret
        self.expires = expires
        self.clock = clock
        self._opaque: dict[str, str] = {}

    def _mac(self, head: bytes, realm: str) -> bytes:
        return hmac.digest(self._secret, b"nonce\0" + head + realm.encode("utf-8"), "sha256")[
            :_MAC_LEN
        ]

    def make(self, realm: str) -> str:
        """A fresh nonce for ``realm``."""
        head = _ISSUED.pack(int(self.clock()) & 0xFFFFFFFF) + os.urandom(_SALT_LEN)
        raw = head + self._mac(head, realm)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def check(self, nonce: str, realm: str) -> tuple[NonceState, int]:
        """Whether ``nonce`` is ours for ``realm`` and still fresh; also its issue time."""
        if len(nonce) != NONCE_LEN:
            return NonceState.INVALID, 0
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return NonceState.INVALID, 0
        head, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if len(raw) != _RAW_LEN or not hmac.compare_digest(mac, self._mac(head, realm)):
            return NonceState.INVALID, 0
        issued = _ISSUED.unpack_from(head)[0]
        age = self.clock() - issued
        if age > self.expires or age < -FUTURE_SKEW:
            return NonceState.EXPIRED, issued
        return NonceState.VALID, issued

    def opaque(self, realm: str) -> str:
        """The opaque value of ``realm``'s challenges: stable, and meaningless to clients."""
        value = self._opaque.get(realm)
        if value is None:
            mac = hmac.digest(self._secret, b"opaque\0" + realm.encode("utf-8"), "sha256")[:12]
            value = base64.urlsafe_b64encode(mac).decode("ascii")
            if len(self._opaque) < 1024:  # realms are local domains: a handful
                self._opaque[realm] = value
        return value


class CountState(enum.Enum):
    OK = "ok"
    REPLAY = "replay"  # nc not greater than the last one seen for this nonce
    FORGOTTEN = "forgotten"  # possibly evicted for lack of room: make the client re-challenge


class NonceCounter:
    """The last nonce-count seen per nonce, for at most ``capacity`` nonces.

    When full, the nonce first used longest ago is forgotten and the issue
    time of every forgotten nonce raises a floor: a nonce issued at or before
    the floor that is not remembered may have been forgotten, so it is refused
    (the client gets a ``stale`` challenge and a fresh nonce). Replays are
    therefore never accepted, whatever the memory bound; under pressure some
    clients re-authenticate once more.

    A retransmission is not a replay: the same count again from the same
    transaction (``txn``, a hash of the top Via branch, Call-ID and CSeq) is
    accepted, because a request answered statelessly reaches the route stages
    once per retransmission. A new transaction needs a new count.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: OrderedDict[str, list[int]] = OrderedDict()  # nonce -> [issued, nc, txn]
        self._floor = -1

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, nonce: str, issued: int, nc: int, txn: int = 0) -> CountState:
        """Record that ``nonce`` (issued at ``issued``) was used with count ``nc`` by ``txn``."""
        entry = self._seen.get(nonce)
        if entry is None:
            if issued <= self._floor:
                return CountState.FORGOTTEN
            if len(self._seen) >= self.capacity:
                _, (old_issued, _, _) = self._seen.popitem(last=False)
                self._floor = max(self._floor, old_issued)
            self._seen[nonce] = [issued, nc, txn]
            return CountState.OK
        if nc > entry[1]:
            entry[1] = nc
            entry[2] = txn
            return CountState.OK
        if nc == entry[1] and txn and txn == entry[2]:
            return CountState.OK  # a retransmission of the request that used it
        return CountState.REPLAY

    def prune(self, oldest_valid: float) -> int:
        """Forget nonces issued before ``oldest_valid`` (expired: refused anyway)."""
        seen = self._seen
        removed = 0
        # First-use order follows issue order closely; stop at the first live one.
        while seen:
            nonce, (issued, _, _) = next(iter(seen.items()))
            if issued >= oldest_valid:
                break
            del seen[nonce]
            removed += 1
        return removed
