"""The auth plugin's hook implementations (entry point ``auth``)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipline.hooks import hookimpl

from sipline_auth import cli
from sipline_auth.authenticator import (
    Authenticator,
    AuthResult,
    Outcome,
    consume_credentials,
)
from sipline_auth.config import NEVER_CHALLENGED, AuthConfig
from sipline_auth.nonce import FUTURE_SKEW, NonceCounter, NonceFactory

if TYPE_CHECKING:
    from sipline.routing.actions import Action, Reply
    from sipline.routing.context import RequestContext
    from sipline.server import Server

NAME = "auth"
log = logging.getLogger("sipline.auth")


class AuthAPI:
    """``ctx.auth`` in routing scripts (OpenSIPS ``www_authorize`` / ``proxy_authorize``)."""

    __slots__ = ("_auth", "_ctx", "last")

    def __init__(self, auth: Authenticator, ctx: RequestContext) -> None:
        self._auth = auth
        self._ctx = ctx
        self.last: AuthResult | None = None

    def check(self, realm: str | None = None) -> AuthResult:
        """Check the request's credentials (Authorization for REGISTER, else Proxy-Authorization).

        Truthy when authenticated; otherwise ``result.reply`` is the challenge
        (or the 403) to return and ``result.outcome`` says why. Reads memory
        only: a user the database has but memory has not yet is fetched in the
        background and known at the next attempt (use :meth:`check_async` to wait).
        """
        self.last = self._auth.check(self._ctx.msg, realm)
        return self.last

    async def check_async(self, realm: str | None = None) -> AuthResult:
        """Like :meth:`check`, looking a missing user or a changed password up in the database first."""
        self.last = await self._auth.check_async(self._ctx.msg, realm)
        return self.last

    def challenge(self, realm: str | None = None, stale: bool = False) -> Reply:
        """A fresh challenge: 401 + WWW-Authenticate for REGISTER, else 407 + Proxy-Authenticate."""
        self._auth.challenges += 1
        return self._auth.challenge(self._ctx.msg, realm, stale)

    def consume_credentials(self) -> bool:
        """Remove the credentials the last successful check used, before relaying."""
        return self.last is not None and consume_credentials(self._ctx.msg, self.last)

    @property
    def user(self) -> str | None:
        """The user the last check authenticated, else None."""
        last = self.last
        return last.username if last is not None and last.ok else None


class TrustedSources:
    """Source addresses exempt from challenges: single addresses and networks."""

    def __init__(self, entries: list[str]) -> None:
        nets = [ipaddress.ip_network(e, strict=False) for e in entries]
        self.hosts = frozenset(str(n.network_address) for n in nets
                               if n.num_addresses == 1)
        self.nets = tuple(n for n in nets if n.num_addresses > 1)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.nets)

    def __contains__(self, address: str) -> bool:
        if address in self.hosts:
            return True
        if not self.nets:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.nets)


class AuthPlugin:
    """State shared by the hooks of one worker."""

    def __init__(self) -> None:
        # Made when the plugin loads, before `sipline run` forks its workers, so
        # that they all accept each other's nonces when no secret is configured.
        self._random_secret = os.urandom(32)
        self.auth: Authenticator | None = None
        self.settings = AuthConfig()
        self.methods: frozenset[str] | None = None
        self.trusted = TrustedSources([])
        self._executor: ThreadPoolExecutor | None = None
        self._last_reload = 0.0

    # -------------------------------------------------------------- registries
    @hookimpl
    def config_model(self) -> type[AuthConfig]:
        return AuthConfig

    @hookimpl
    def migrations_location(self) -> str:
        return str(Path(__file__).parent / "migrations")

    @hookimpl
    def register_cli_commands(self, register: Any) -> None:
        register("user", cli.handle, configure=cli.configure,
                 help="manage the subscribers of digest authentication: add, passwd, rm, list")

    @hookimpl
    def register_script_api(self, register: Any) -> None:
        register("auth", self._api)

    def _api(self, ctx: RequestContext) -> AuthAPI:
        if self.auth is None:
            raise RuntimeError("the auth plugin is not started")
        return AuthAPI(self.auth, ctx)

    @hookimpl
    def register_statistics(self, register: Any) -> None:
        def count(outcome: Outcome) -> Any:
            return lambda: self.auth.counts[outcome] if self.auth else 0

        register("auth:challenges", kind="counter", help="challenges sent (401/407)",
                 function=lambda: self.auth.challenges if self.auth else 0)
        register("auth:authenticated", kind="counter", function=count(Outcome.OK),
                 help="requests whose credentials were accepted")
        register("auth:failed", kind="counter", function=count(Outcome.WRONG),
                 help="credentials with a wrong password or an unknown user")
        register("auth:stale", kind="counter", function=count(Outcome.STALE),
                 help="right credentials with an expired nonce (stale=true challenge)")
        register("auth:replayed", kind="counter", function=count(Outcome.REPLAY),
                 help="right credentials whose nonce count was already used")
        register("auth:forbidden", kind="counter", function=count(Outcome.FORBIDDEN),
                 help="authenticated as another user than From/To (403)")
        register("auth:subscribers", kind="gauge", help="subscribers in memory",
                 function=lambda: len(self.auth.store) if self.auth else 0)

    @hookimpl
    def register_mi_commands(self, register: Any) -> None:
        register("auth:reload", self.mi_reload, params={},
                 help="reload the subscriber table into memory now")

    async def mi_reload(self) -> int:
        if self.auth is None:
            raise RuntimeError("the auth plugin is not started")
        return await self.auth.store.reload()

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    async def startup(self, server: Server) -> None:
        from sipline.db import engine_for

        settings: AuthConfig = server.plugin_config(NAME) or AuthConfig()
        self.settings = settings
        self.methods = frozenset(settings.methods) if settings.methods is not None else None
        self.trusted = TrustedSources(settings.trusted)
        if settings.secret:
            secret = settings.secret.encode("utf-8")
        else:
            secret = self._random_secret
            log.warning(
                "[plugins.auth] secret is not set: using a random one; the workers of this "
                "process agree on it, but other nodes will not accept these nonces and a "
                "restart invalidates them (clients re-authenticate once)"
            )
        # Imported here: loading SQLAlchemy's ORM is slow and the CLI loads this module too.
        from sipline_auth.schema import ensure_schema
        from sipline_auth.store import SubscriberStore, load_account, load_accounts

        engine = engine_for(server.config)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sipline-auth")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, ensure_schema, server.config, engine)
        store = SubscriberStore(
            partial(load_accounts, engine),
            partial(load_account, engine),
            self._executor,
            lookup_interval=settings.lookup_interval,
        )
        count = await store.reload()
        self._last_reload = loop.time()
        self.auth = Authenticator(
            settings,
            store,
            NonceFactory(secret, settings.nonce_expires),
            NonceCounter(settings.nc_cache_size),
            spawn=server.spawn,
        )
        log.info("auth: %d subscribers in memory (algorithms %s)", count,
                 ", ".join(settings.algorithms))

    @hookimpl
    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @hookimpl
    def timer(self, now: float) -> Any:
        auth = self.auth
        if auth is None:
            return None
        nonces = auth.nonces
        auth.counter.prune(nonces.clock() - nonces.expires - FUTURE_SKEW)
        interval = self.settings.reload_interval
        if interval and now - self._last_reload >= interval:
            self._last_reload = now
            return self._reload(auth)
        return None

    @staticmethod
    async def _reload(auth: Authenticator) -> None:
        try:
            await auth.store.reload()
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop auth
            log.warning("auth: reloading the subscribers failed, keeping the old copy: %s", exc)

    # ------------------------------------------------------------ default route
    @hookimpl(tryfirst=True)
    def route_request(self, ctx: RequestContext) -> Action | Any | None:
        """Challenge initial requests from local users (REGISTER: to local domains).

        Runs before the other plugins (tryfirst) but after the routing script.
        Declines (None) once authenticated, so the registrar and the default
        script go on; returns the challenge otherwise.
        """
        auth = self.auth
        if auth is None or not self.settings.default_route:
            return None
        msg = ctx.msg
        method = msg.method
        if method in NEVER_CHALLENGED or (self.methods is not None and method not in self.methods):
            return None
        if msg.to.tag:
            return None  # in-dialog: follows an authenticated INVITE (as opensips.cfg)
        if self.trusted and ctx.source.remote[0] in self.trusted:
            return None
        if method == "REGISTER":
            if not ctx.is_myself():
                return None  # for another registrar: the proxy relays it
        else:
            host = getattr(msg.from_.uri, "host", None)
            if host is None or not ctx.server.is_local(host):
                return None  # not one of our users: nothing to authenticate against
        result = auth.evaluate(msg)
        if result.lookup is not None:
            if result.outcome is Outcome.WRONG:
                return self._after_lookup(auth, ctx, result)
            auth.prefetch(result.lookup)
        auth.record(result)
        return self._decide(ctx, result)

    async def _after_lookup(
        self, auth: Authenticator, ctx: RequestContext, first: AuthResult
    ) -> Action | None:
        assert first.lookup is not None
        return self._decide(ctx, await auth.check_after_lookup(ctx.msg, first.lookup))

    @staticmethod
    def _decide(ctx: RequestContext, result: AuthResult) -> Action | None:
        if not result:
            return result.reply
        ctx.vars["auth_user"] = result.username
        if ctx.msg.method != "REGISTER":
            consume_credentials(ctx.msg, result)
        return None


plugin = AuthPlugin()

# The entry point names this module: pluggy registers the module object, so the hooks
# must be module-level names bound to the one plugin instance.
config_model = plugin.config_model
migrations_location = plugin.migrations_location
register_cli_commands = plugin.register_cli_commands
register_script_api = plugin.register_script_api
register_statistics = plugin.register_statistics
register_mi_commands = plugin.register_mi_commands
startup = plugin.startup
shutdown = plugin.shutdown
timer = plugin.timer
route_request = plugin.route_request
