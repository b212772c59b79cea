"""Checking a request's digest credentials and building challenges (RFC 3261 §22).

:meth:`Authenticator.check` is synchronous and reads memory only; when the
database might know better (a user not in memory, a password that did not
match) the result names the user to look up, and
:meth:`Authenticator.check_async` does that lookup in a thread and checks again.
"""

from __future__ import annotations

import enum
import hmac
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipline.routing.actions import Reply

from sipline_auth import digest
from sipline_auth.nonce import CountState, NonceCounter, NonceFactory, NonceState

if TYPE_CHECKING:
    from sipline_auth.store import Key, SubscriberStore
    from sipline.sip import Request

    from sipline_auth.config import AuthConfig

log = logging.getLogger("sipline.auth")


class Outcome(enum.Enum):
    """What a credentials check found."""

    OK = "ok"
    NO_CREDENTIALS = "no credentials"  # nothing for our realm: first contact
    MALFORMED = "malformed"  # unparsable, or an algorithm / qop we did not offer
    WRONG = "wrong"  # wrong password or unknown user (the same on the wire)
    STALE = "stale"  # right password, but the nonce expired (or is not ours any more)
    REPLAY = "replay"  # right password, nonce-count not greater than the last one
    FORBIDDEN = "forbidden"  # right password, but not the From (To for REGISTER) user


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The result of ``ctx.auth.check()``: truthy only when authenticated.

    ``reply`` is the action to return when not authenticated: a challenge
    (401 with WWW-Authenticate for REGISTER, 407 with Proxy-Authenticate
    otherwise; ``stale=true`` for ``STALE``), or 403 for ``FORBIDDEN``.
    """

    outcome: Outcome
    reply: Reply | None = None
    username: str | None = None  # the user of the credentials (authenticated only when OK)
    domain: str | None = None
    realm: str | None = None
    header: str | None = None  # the header holding the credentials used
    credentials: str | None = None  # its value
    lookup: Key | None = None  # a database lookup could change the outcome

    def __bool__(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


_FORBIDDEN = Reply(403, "Forbidden auth ID")
#: Outcomes worth a log line (failed attempts with credentials: fail2ban material).
_LOGGED = frozenset({Outcome.WRONG, Outcome.REPLAY, Outcome.FORBIDDEN, Outcome.MALFORMED})


class Authenticator:
    """The digest authentication state of one worker."""

    def __init__(
        self,
        settings: AuthConfig,
        store: SubscriberStore,
        nonces: NonceFactory,
        counter: NonceCounter,
        spawn: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
    ) -> None:
        self.store = store
        self.nonces = nonces
        self.counter = counter
        self.realm = settings.realm
        self.algorithms = tuple(settings.algorithms)
        self.qop = tuple(settings.qop)
        self.check_from = settings.check_from
        self._spawn = spawn
        # Unknown users are checked against a random HA1, so they cost what a
        # known user with a wrong password costs.
        self._dummy = {alg: digest.hexdigest(alg, os.urandom(16)) for alg in self.algorithms}
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.challenges = 0

    # ------------------------------------------------------------------ identity
    @staticmethod
    def identity(msg: Request) -> tuple[str | None, str]:
        """The user and domain a request speaks for: To of a REGISTER, From otherwise."""
        uri = msg.to.uri if msg.method == "REGISTER" else msg.from_.uri
        host = getattr(uri, "host", None)
        return getattr(uri, "user", None), (host or "").lower()

    def realm_for(self, domain: str) -> str:
        """The realm of a request for ``domain``: the configured one, else the domain."""
        return self.realm or domain or "sipline"

    # ---------------------------------------------------------------- challenge
    def challenge(self, msg: Request, realm: str | None = None, stale: bool = False) -> Reply:
        """A fresh challenge for ``msg``: one header per algorithm, in preference order."""
        if realm is None:
            realm = self.realm_for(self.identity(msg)[1])
        nonce = self.nonces.make(realm)
        opaque = self.nonces.opaque(realm)
        proxy = msg.method != "REGISTER"
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        headers = tuple(
            (name, digest.challenge(realm, nonce, alg, opaque=opaque, qop=self.qop, stale=stale))
            for alg in self.algorithms
        )
        if proxy:
            return Reply(407, "Proxy Authentication Required", headers)
        return Reply(401, "Unauthorized", headers)

    # -------------------------------------------------------------------- check
    def check(self, msg: Request, realm: str | None = None) -> AuthResult:
        """Check the credentials of ``msg`` against the subscribers in memory.

        When the database may know better, the user is looked up in the
        background for the next attempt (``result.lookup`` names it).
        """
        result = self.evaluate(msg, realm)
        if result.lookup is not None:
            self.prefetch(result.lookup)
        self.record(result)
        return result

    async def check_async(self, msg: Request, realm: str | None = None) -> AuthResult:
        """:meth:`check`, but a wrong password or unknown user is first looked up in the database."""
        result = self.evaluate(msg, realm)
        if result.lookup is not None:
            if result.outcome is Outcome.WRONG:
                return await self.check_after_lookup(msg, result.lookup, realm)
            self.prefetch(result.lookup)
        self.record(result)
        return result

    async def check_after_lookup(self, msg: Request, key: Key, realm: str | None = None) -> AuthResult:
        """Look ``key`` up in the database, then check ``msg`` again."""
        await self.store.fetch(key)
        result = self.evaluate(msg, realm)
        self.record(result)
        return result

    def prefetch(self, key: Key) -> None:
        """Look ``key`` up in the background (the answer to a challenge usually follows)."""
        if self._spawn is not None:
            self._spawn(self.store.fetch(key))

    def record(self, result: AuthResult) -> None:
        """Count (and log the failures of) a result that is final."""
        outcome = result.outcome
        self.counts[outcome] += 1
        if outcome is not Outcome.OK and outcome is not Outcome.FORBIDDEN:
            self.challenges += 1
        if outcome in _LOGGED and log.isEnabledFor(logging.INFO):
            log.info("auth %s: user %s@%s (realm %r)", outcome.value, result.username,
                     result.domain, result.realm)

    def evaluate(self, msg: Request, realm: str | None = None) -> AuthResult:
        """The outcome for ``msg`` from memory alone, without counting it."""
        user, domain = self.identity(msg)
        if realm is None:
            realm = self.realm_for(domain)
        name = "Authorization" if msg.method == "REGISTER" else "Proxy-Authorization"
        creds = raw = None
        malformed = False
        for value in msg.get_all(name):
            parsed = digest.parse_credentials(value)
            if parsed is None:
                malformed = True
            elif parsed.realm == realm:
                creds, raw = parsed, value
                break
        store = self.store
        if creds is None:
            # First contact: fetch the user meanwhile, so that a subscriber added
            # since the last reload is known when the credentials come.
            key = (user, domain) if user else None
            lookup = key if key and store.get(*key) is None and store.may_look_up(key) else None
            outcome = Outcome.MALFORMED if malformed else Outcome.NO_CREDENTIALS
            return self._fail(outcome, msg, realm, user, domain, lookup=lookup)
        username = creds.username
        algorithm = digest.canonical_algorithm(creds.algorithm)
        if algorithm not in self.algorithms or (creds.qop is not None and creds.qop not in self.qop):
            return self._fail(Outcome.MALFORMED, msg, realm, username, domain)

        key = (username, domain)
        account = store.get(username, domain)
        ha1 = account.ha1_for(algorithm, realm) if account is not None else None
        expected = digest.response(
            algorithm,
            ha1 or self._dummy[algorithm],
            creds.nonce,
            digest.ha2(algorithm, msg.method, creds.uri, creds.qop,
                       msg.body if creds.qop == "auth-int" else b""),
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        if not hmac.compare_digest(expected, creds.response) or ha1 is None:
            lookup = key if store.may_look_up(key) else None
            return self._fail(Outcome.WRONG, msg, realm, username, domain, lookup=lookup)

        # The password is right; is this a fresh nonce, and a new nonce count?
        state, issued = self.nonces.check(creds.nonce, realm)
        if state is not NonceState.VALID:
            return self._fail(Outcome.STALE, msg, realm, username, domain, stale=True)
        counted = self.counter.use(creds.nonce, issued, creds.nc_value, _transaction(msg))
        if counted is CountState.FORGOTTEN:
            return self._fail(Outcome.STALE, msg, realm, username, domain, stale=True)
        if counted is CountState.REPLAY:
            return self._fail(Outcome.REPLAY, msg, realm, username, domain)
        if self.check_from and username != user:
            return AuthResult(Outcome.FORBIDDEN, _FORBIDDEN, username, domain, realm, name, raw)
        return AuthResult(Outcome.OK, None, username, domain, realm, name, raw)

    def _fail(
        self,
        outcome: Outcome,
        msg: Request,
        realm: str,
        username: str | None,
        domain: str,
        *,
        stale: bool = False,
        lookup: Key | None = None,
    ) -> AuthResult:
        return AuthResult(outcome, self.challenge(msg, realm, stale), username, domain, realm,
                          lookup=lookup)


def _transaction(msg: Request) -> int:
    """What tells a retransmission from a new request: top Via branch, Call-ID, CSeq."""
    via = msg.top_via
    return hash((via.branch if via is not None else None, msg.call_id, msg.get("cseq"))) or 1


def consume_credentials(msg: Request, result: AuthResult) -> bool:
    """Remove the credentials ``result`` used from ``msg`` (OpenSIPS ``consume_credentials``)."""
    if result.header is None or result.credentials is None:
        return False
    values = msg.get_all(result.header)
    if result.credentials not in values:
        return False
    msg.remove_header(result.header)
    values.remove(result.credentials)
    for value in values:  # credentials for other realms travel on
        msg.add_header(result.header, value)
    return True
