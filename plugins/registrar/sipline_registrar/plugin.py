"""The registrar plugin's hook implementations (entry point ``registrar``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sipline.hooks import hookimpl
from sipline.routing.actions import Action, Redirect
from sipline.sip import parse_uri
from sipline_registrar.config import RegistrarConfig
from sipline_registrar.location import Binding, LocationStore, best_first
from sipline_registrar.registrar import Registrar, aor_of

if TYPE_CHECKING:
    from sipline.routing.context import RequestContext
    from sipline.server import Server

NAME = "registrar"


class RegistrarAPI:
    """``ctx.registrar`` in routing scripts."""

    __slots__ = ("_registrar", "_ctx")

    def __init__(self, registrar: Registrar, ctx: RequestContext) -> None:
        self._registrar = registrar
        self._ctx = ctx

    def save(self) -> Action:
        """Process the REGISTER; returns the reply action (OpenSIPS ``save``)."""
        return self._registrar.save(self._ctx)

    def lookup(self) -> bool:
        """Route to the registered contacts of the R-URI; False when there are none."""
        return self._registrar.lookup(self._ctx)

    def is_registered(self, aor: str | None = None) -> bool:
        """True when ``aor`` (default: the R-URI's user@host) has a live binding."""
        key = aor if aor is not None else aor_of(self._ctx.ruri_uri)
        return bool(key and self._registrar.contacts_for(key))


class RegistrarPlugin:
    """State shared by the hooks of one worker."""

    def __init__(self) -> None:
        self.registrar: Registrar | None = None
        #: sql-only mode: REGISTER processing and expiry run here, off the event loop.
        self.sql_thread: ThreadPoolExecutor | None = None
        self._last_flush = 0.0

    @hookimpl
    def config_model(self) -> type[RegistrarConfig]:
        return RegistrarConfig

    @hookimpl
    def startup(self, server: Server) -> None:
        config = server.plugin_config(NAME) or RegistrarConfig()
        clock = time.monotonic
        store = LocationStore()
        if config.db_mode != "memory":  # SQLAlchemy is imported only for the SQL modes
            from sqlalchemy.exc import SQLAlchemyError

            from sipline.db import display_url, engine_for
            from sipline_registrar.storage import open_store

            try:
                store = open_store(config.db_mode, engine_for(server.config), clock)
            except SQLAlchemyError as exc:
                raise RuntimeError(
                    f"cannot load bindings from the location table of "
                    f"{display_url(server.config.database_url)} (db_mode {config.db_mode!r}; "
                    f"has `sipline db upgrade` run?): {getattr(exc, 'orig', None) or exc}"
                ) from exc
        if config.db_mode == "sql-only":
            self.sql_thread = ThreadPoolExecutor(1, thread_name_prefix="registrar-sql")
        self.registrar = Registrar(config, clock, store)
        self._last_flush = clock()
        server.allowed_methods.add("REGISTER")
        server.supported.add("path")

    @hookimpl
    def shutdown(self, server: Server) -> Any:
        """Write back what is pending and stop the SQL threads (off the event loop)."""
        registrar, pool = self.registrar, self.sql_thread
        self.sql_thread = None
        if registrar is None:
            return None

        store = registrar.store
        store.flush()  # on the loop, where the store changes; the writer does the rest

        def close() -> None:
            if pool is not None:
                pool.shutdown(wait=True)
            store.close()

        return asyncio.to_thread(close)

    @hookimpl
    def register_script_api(self, register: Any) -> None:
        register("registrar", self._api)

    def _api(self, ctx: RequestContext) -> RegistrarAPI:
        assert self.registrar is not None
        return RegistrarAPI(self.registrar, ctx)

    @hookimpl
    def register_statistics(self, register: Any) -> None:
        register("registrar:accepted_regs", kind="counter",
                 function=lambda: self.registrar.accepted if self.registrar else 0,
                 help="REGISTER requests accepted")
        register("registrar:rejected_regs", kind="counter",
                 function=lambda: self.registrar.rejected if self.registrar else 0,
                 help="REGISTER requests rejected")
        register("usrloc:registered_users", kind="gauge",
                 function=lambda: self.registrar.store.users if self.registrar else 0,
                 help="AORs with at least one binding")
        register("usrloc:contacts", kind="gauge",
                 function=lambda: self.registrar.store.contacts if self.registrar else 0,
                 help="bindings in the location table")

    @hookimpl
    def register_mi_commands(self, register: Any) -> None:
        """OpenSIPS usrloc MI commands (reachable once the MI server lands)."""
        register("usrloc:show_contact", self.mi_show_contact, alias="ul_show_contact",
                 params={"aor": str}, help="the live bindings of one AOR")
        register("usrloc:dump", self.mi_dump, alias="ul_dump", params={},
                 help="every AOR with its bindings")
        register("usrloc:rm", self.mi_rm, alias="ul_rm", params={"aor": str},
                 help="remove every binding of an AOR")
        register("usrloc:rm_contact", self.mi_rm_contact, alias="ul_rm_contact",
                 params={"aor": str, "contact": str}, help="remove one binding")
        register("usrloc:add", self.mi_add, alias="ul_add",
                 params={"aor": str, "contact": str, "expires": int, "q": float},
                 help="add or refresh a binding by hand")

    def _reg(self) -> Registrar:
        if self.registrar is None:
            raise RuntimeError("the registrar is not started")
        return self.registrar

    def mi_show_contact(self, aor: str) -> list[dict[str, Any]]:
        reg = self._reg()
        now = reg.clock()
        return [_binding_info(b, now) for b in reg.store.bindings(aor, now)]

    def mi_dump(self) -> dict[str, list[dict[str, Any]]]:
        reg = self._reg()
        now = reg.clock()
        out = {}
        for aor, entries in reg.store:  # one query in sql-only mode
            live = best_first(b for b in entries.values() if b.expires > now)
            if live:
                out[aor] = [_binding_info(b, now) for b in live]
        return out

    def mi_rm(self, aor: str) -> int:
        reg = self._reg()
        count = reg.store.count(aor)
        reg.store.remove_aor(aor)
        return count

    def mi_rm_contact(self, aor: str, contact: str) -> bool:
        reg = self._reg()
        key = str(parse_uri(contact))
        found = reg.store.get(aor, key) is not None
        reg.store.remove(aor, key)
        return found

    def mi_add(self, aor: str, contact: str, expires: int, q: float | None = None) -> bool:
        reg = self._reg()
        if expires <= 0:
            raise ValueError("expires must be positive")
        if q is not None and not 0 <= q <= 1:
            raise ValueError("q must be between 0 and 1")
        uri = parse_uri(contact)
        now = reg.clock()
        key = str(uri)
        old = reg.store.get(aor, key)
        reg.store.put(aor, key, Binding(
            contact=key, expires=now + expires, q=q, callid="mi-ul_add", cseq=0,
            created=old.created if old is not None else now,
        ))
        return True

    @hookimpl
    def route_request(self, ctx: RequestContext) -> Action | Awaitable[Action] | None:
        registrar = self.registrar
        if registrar is None:
            return None
        method = ctx.msg.method
        if method == "REGISTER":
            # Only for our domains; a REGISTER for elsewhere is the proxy's to relay.
            if not ctx.is_myself():
                return None
            if self.sql_thread is not None:  # sql-only: the queries and commit off the loop
                return asyncio.get_running_loop().run_in_executor(
                    self.sql_thread, registrar.save, ctx
                )
            return registrar.save(ctx)
        if (
            registrar.config.redirect
            and method == "INVITE"
            and not ctx.msg.to.tag
            and ctx.is_myself()
        ):
            aor = aor_of(ctx.msg.uri)
            bindings = registrar.contacts_for(aor, method) if aor else []
            if bindings:
                contacts = [
                    f"<{b.contact}>" + (f";q={b.q:g}" if b.q is not None else "")
                    for b in bindings
                ]
                return Redirect(tuple(contacts), 302, "Moved Temporarily")
        return None

    @hookimpl
    def timer(self, server: Server, now: float) -> Any:
        registrar = self.registrar
        if registrar is None:
            return None
        if self.sql_thread is not None:  # a DELETE: in the SQL thread
            return asyncio.get_running_loop().run_in_executor(self.sql_thread, registrar.expire)
        registrar.expire()
        store = registrar.store
        if store.periodic_flush:
            clock_now = registrar.clock()
            if clock_now - self._last_flush >= registrar.config.write_back_interval:
                self._last_flush = clock_now
                store.flush()
        return None


def _binding_info(b: Binding, now: float) -> dict[str, Any]:
    """A binding as MI shows it (OpenSIPS ul_show_contact field names)."""
    return {
        "contact": b.contact,
        "expires": max(0, round(b.expires - now)),
        "q": b.q,
        "callid": b.callid,
        "cseq": b.cseq,
        "received": b.received,
        "path": list(b.path),
        "user_agent": b.user_agent,
        "socket": b.socket,
        "sip_instance": b.instance,
        "reg_id": b.reg_id,
        "methods": b.methods,
    }


plugin = RegistrarPlugin()

# The entry point names this module: pluggy registers the module object, so the hooks
# must be module-level names bound to the one plugin instance.
config_model = plugin.config_model
startup = plugin.startup
register_script_api = plugin.register_script_api
register_statistics = plugin.register_statistics
register_mi_commands = plugin.register_mi_commands
route_request = plugin.route_request
timer = plugin.timer
shutdown = plugin.shutdown
