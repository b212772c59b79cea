"""The dialog plugin's hook implementations (entry point ``dialog``).

Where the plugin sees a call:

- the initial INVITE: ``ctx.dialog.create()`` in the routing script (or the API, or
  ``auto_create`` in this plugin's ``route_request``) creates the dialog, puts
  ``;did=<id>`` in our Record-Route and keeps the dialog in ``ctx.vars``;
- the INVITE's responses: ``route_reply`` sees them with the same ``ctx.vars``
  (early on a 1xx with a To tag, confirmed on the 2xx); a final >= 300, or a
  transaction that ended without a response we saw (local 408/487), fails it;
- in-dialog requests: this plugin's ``route_request`` (declining, so routing goes
  on) matches them by the ``did`` cookie of our Route entry, else by Call-ID and
  tags, when the routing script leaves them to the pipeline; a script that relays
  them itself may call ``ctx.dialog.match()``, and whatever the script does, the
  final response of a relayed in-dialog request passes ``route_reply``, where the
  plugin catches up (a BYE ends the dialog there at the latest);
- the ``timer`` hook: lifetimes (BYE to both sides when asked), dialogs whose INVITE
  ended unseen, write-back flushes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from sipline.hooks import hookimpl
from sipline.sip import SipParseError, parse_name_addr

from sipline_dialog.config import DialogConfig
from sipline_dialog.dialog import FAILED, TERMINATED, Callback, Dialog, DialogState
from sipline_dialog.sip import build_bye, did_of, first_contact, socket_name, split_route_set
from sipline_dialog.table import DialogError, DialogTable

if TYPE_CHECKING:
    from sipline.routing.context import ReplyContext, RequestContext
    from sipline.server import Server

NAME = "dialog"
#: Where a message's dialog is kept in ``ctx.vars`` (per transaction).
VAR = "sipline_dialog"

log = logging.getLogger("sipline.plugin.dialog")

_REFRESHING = frozenset({"INVITE", "UPDATE"})
_PENDING = (DialogState.UNCONFIRMED, DialogState.EARLY)


def _request_ctx(ctx: Any) -> Any:
    """The request context behind any stage context (failure, branch: ``ctx.request``)."""
    request = getattr(ctx, "request", None)
    if request is not None and hasattr(request, "vars") and hasattr(request, "msg"):
        return request  # FailureContext / BranchContext
    return ctx


class DialogApi:
    """What other plugins use: ``sipline_dialog.api(server)`` returns this object.

    Every method is synchronous and cheap (dict lookups) except :meth:`end`, which
    returns an awaitable (it sends the BYEs).
    """

    def __init__(self, plugin: DialogPlugin) -> None:
        self._plugin = plugin

    @property
    def table(self) -> DialogTable:
        return self._plugin.require()

    # -- dialogs ------------------------------------------------------------------------
    def create(self, ctx: Any, timeout: int | None = None) -> Dialog:
        """The dialog of an initial INVITE, created on first call (idempotent per
        transaction): ``ctx`` is its request context (or a failure context)."""
        return self._plugin.create(ctx, timeout)

    def current(self, ctx: Any) -> Dialog | None:
        """The dialog created or matched for ``ctx``'s transaction, if any."""
        return _request_ctx(ctx).vars.get(VAR)

    def match(self, ctx: Any) -> Dialog | None:
        """Match an in-dialog request to its dialog (and update the dialog's state)."""
        return self._plugin.match(_request_ctx(ctx))

    def get(self, dlg_id: str) -> Dialog | None:
        return self.table.get(dlg_id)

    def dialogs(self) -> Iterator[Dialog]:
        return iter(self.table)

    async def end(self, dlg: Dialog) -> dict[str, int | None]:
        """End a confirmed dialog by hand: BYE to both sides (OpenSIPS ``dlg_end_dlg``).

        :returns: the final status each side answered (None: the BYE could not be sent).
        """
        return await self._plugin.end_dialog(dlg)

    # -- callbacks ----------------------------------------------------------------------
    def subscribe(self, event: str, callback: Callback) -> None:
        """``callback(dlg, event)`` for every dialog reaching ``event``: created, early,
        confirmed, terminated, expired, failed, and ended (after any of the last three)."""
        self.table.subscribe(event, callback)

    def unsubscribe(self, event: str, callback: Callback) -> None:
        self.table.unsubscribe(event, callback)

    # -- profiles -----------------------------------------------------------------------
    def define_profile(self, name: str, with_value: bool = False) -> None:
        """Define a profile at startup (idempotent; the other kind is an error)."""
        self.table.profiles.define(name, with_value)

    def profile_size(self, name: str, value: Any = None) -> int:
        return self.table.profile_size(name, value)

    def profile_dialogs(self, name: str, value: Any = None) -> list[Dialog]:
        if value is not None and not isinstance(value, str):
            value = str(value)
        return list(self.table.profiles.get(name, value).dialogs(value))


class DialogScriptApi:
    """``ctx.dialog`` in routing scripts (OpenSIPS dialog module functions)."""

    __slots__ = ("_ctx", "_plugin")

    def __init__(self, plugin: DialogPlugin, ctx: Any) -> None:
        self._plugin = plugin
        self._ctx = ctx

    def create(self, timeout: int | None = None) -> Dialog:
        """OpenSIPS ``create_dialog()``: track this initial INVITE (idempotent)."""
        return self._plugin.create(self._ctx, timeout)

    def match(self) -> Dialog | None:
        """OpenSIPS ``match_dialog()``: the dialog of this in-dialog request, or None."""
        return self._plugin.match(_request_ctx(self._ctx))

    @property
    def current(self) -> Dialog | None:
        """The dialog created or matched for this message (None: none yet)."""
        vars_ = getattr(_request_ctx(self._ctx), "vars", None)
        return vars_.get(VAR) if vars_ is not None else None

    def _dialog(self) -> Dialog:
        dlg = self.current
        if dlg is None:
            raise DialogError(
                "no dialog for this message: call ctx.dialog.create() (initial INVITE) "
                "or ctx.dialog.match() (in-dialog request) first"
            )
        return dlg

    @property
    def vars(self) -> dict[str, Any]:
        """The dialog's variables (OpenSIPS ``$dlg_val``)."""
        return self._dialog().vars

    def set_timeout(self, seconds: int) -> None:
        """OpenSIPS ``$DLG_timeout = seconds``."""
        self._dialog().set_timeout(seconds)

    def set_dlg_profile(self, name: str, value: Any = None) -> None:
        self._dialog().set_profile(name, value)

    def unset_dlg_profile(self, name: str, value: Any = None) -> bool:
        return self._dialog().unset_profile(name, value)

    def is_in_profile(self, name: str, value: Any = None) -> bool:
        return self._dialog().in_profile(name, None if value is None else str(value))

    def get_profile_size(self, name: str, value: Any = None) -> int:
        return self._plugin.require().profile_size(name, value)


class DialogPlugin:
    """State of one worker: the dialog table, its storage, the API objects."""

    def __init__(self) -> None:
        self.table: DialogTable | None = None
        self.server: Server | None = None
        self.config = DialogConfig()
        self.api = DialogApi(self)
        self.storage: Any = None
        self._last_flush = 0.0

    def require(self) -> DialogTable:
        if self.table is None:
            raise DialogError("the dialog plugin is not started")
        return self.table

    def prepare(self, server: Server) -> DialogTable:
        """The table for ``server``, made on first use (another plugin may ask for the
        API before this plugin's own startup hook ran)."""
        if self.table is None or self.server is not server:
            self.server = server
            self.config = server.plugin_config(NAME) or DialogConfig()
            self.table = DialogTable(self.config, time.monotonic, spawn=server.spawn)
        return self.table

    # ------------------------------------------------------------------ lifecycle
    @hookimpl
    def config_model(self) -> type[DialogConfig]:
        return DialogConfig

    @hookimpl
    def startup(self, server: Server) -> None:
        table = self.prepare(server)
        config = self.config
        if config.db_mode != "memory":
            from sipline.db import display_url, engine_for
            from sqlalchemy.exc import SQLAlchemyError

            from sipline_dialog.storage import DialogStorage

            try:
                self.storage = DialogStorage(engine_for(server.config), config.db_mode, table)
                self.storage.load()
            except SQLAlchemyError as exc:
                raise RuntimeError(
                    f"cannot load dialogs from the dialog table of "
                    f"{display_url(server.config.database_url)} (db_mode {config.db_mode!r}; "
                    f"has `sipline db upgrade` run?): {getattr(exc, 'orig', None) or exc}"
                ) from exc
            table.store = self.storage
            if server.config.server.workers > 1:
                log.warning("dialog: db_mode %r with %d workers: every worker loads and "
                            "expires the same dialogs", config.db_mode,
                            server.config.server.workers)
        self._last_flush = time.monotonic()

    @hookimpl
    def shutdown(self, server: Server) -> Any:
        storage, self.storage = self.storage, None
        if storage is None:
            return None
        storage.flush()  # on the loop, where the dialogs change; the thread writes
        return asyncio.to_thread(storage.close)

    # ------------------------------------------------------------------ registries
    @hookimpl
    def register_script_api(self, register: Any) -> None:
        register("dialog", self._script_api)

    def _script_api(self, ctx: Any) -> DialogScriptApi:
        self.require()
        return DialogScriptApi(self, ctx)

    @hookimpl
    def register_statistics(self, register: Any) -> None:
        def stat(attr: str) -> Any:
            return lambda: getattr(self.table, attr) if self.table is not None else 0

        register("dialog:active_dialogs", kind="gauge", function=stat("active"),
                 per_worker=True, help="confirmed dialogs")
        register("dialog:early_dialogs", kind="gauge", function=stat("early"),
                 per_worker=True, help="early dialogs (a provisional with a To tag came back)")
        register("dialog:processed_dialogs", kind="counter", function=stat("processed"),
                 help="dialogs created")
        register("dialog:expired_dialogs", kind="counter", function=stat("expired"),
                 help="dialogs ended by their timeout")
        register("dialog:failed_dialogs", kind="counter", function=stat("failed"),
                 help="dialogs never confirmed (final >= 300, CANCEL, no answer)")

    @hookimpl
    def register_mi_commands(self, register: Any) -> None:
        register("dialog:list", self.mi_list, alias="dlg_list",
                 params={"callid": str, "from_tag": str},
                 help="the dialogs (optionally of one Call-ID, and From tag)")
        register("dialog:end_dlg", self.mi_end_dlg, alias="dlg_end_dlg",
                 params={"dialog_id": str},
                 help="end a confirmed dialog: BYE to both sides")
        register("dialog:profile_get_size", self.mi_profile_get_size, alias="profile_get_size",
                 params={"profile": str, "value": str},
                 help="how many dialogs a profile holds (with a value: for that value)")
        register("dialog:profile_list_dlgs", self.mi_profile_list_dlgs,
                 alias="profile_list_dlgs", params={"profile": str, "value": str},
                 help="the dialogs of a profile (with a value: for that value)")
        register("dialog:profile_get_values", self.mi_profile_get_values,
                 alias="profile_get_values", params={"profile": str},
                 help="the values of a profile with values, with their counts")

    # ------------------------------------------------------------------ MI commands
    def _wall_offset(self) -> float:
        return time.time() - self.require().clock()

    def mi_list(self, callid: str | None = None, from_tag: str | None = None) -> dict[str, Any]:
        table = self.require()
        offset = self._wall_offset()
        if callid is not None:
            found = [d for d in table.by_callid.get(callid, ())
                     if from_tag is None or d.from_tag == from_tag]
        else:
            found = list(table)
        return {"Dialogs": [d.info(offset) for d in found]}

    async def mi_end_dlg(self, dialog_id: str) -> dict[str, Any]:
        from sipline.mi.jsonrpc import MIError

        dlg = self.require().get(dialog_id)
        if dlg is None:
            raise MIError(f"no dialog {dialog_id!r} (dlg_list shows the dialogs)")
        if not dlg.confirmed:
            raise MIError(f"dialog {dialog_id!r} is {dlg.state.name.lower()}: only a confirmed "
                          "dialog can be ended with BYE")
        statuses = await self.end_dialog(dlg)
        return {"dialog_id": dialog_id, **statuses}

    def mi_profile_get_size(self, profile: str, value: str | None = None) -> dict[str, Any]:
        count = self.require().profile_size(profile, value)
        return {"Profile": {"name": profile, "value": value, "count": count}}

    def mi_profile_list_dlgs(self, profile: str, value: str | None = None) -> dict[str, Any]:
        table = self.require()
        offset = self._wall_offset()
        dialogs = table.profiles.get(profile, value).dialogs(value)
        return {"Dialogs": [d.info(offset) for d in sorted(dialogs, key=lambda d: d.created)]}

    def mi_profile_get_values(self, profile: str) -> dict[str, Any]:
        found = self.require().profiles.get(profile)
        return {"Profiles": [
            {"value": value, "count": len(group)}
            for value, group in sorted(found.members.items(), key=lambda kv: kv[0] or "")
        ]}

    # ------------------------------------------------------------------ dialogs
    def create(self, ctx: Any, timeout: int | None = None) -> Dialog:
        table = self.require()
        rctx = _request_ctx(ctx)
        if not hasattr(rctx, "record_route"):
            raise DialogError("a dialog is created in route_request (or a failure route), "
                              f"not from a {type(ctx).__name__}")
        msg = rctx.msg
        existing = rctx.vars.get(VAR)
        if existing is not None and not msg.to.tag:
            if timeout is not None and not existing.ended:
                existing.set_timeout(timeout)
            return existing
        if msg.method != "INVITE" or msg.to.tag:
            raise DialogError(
                f"a dialog is created from an initial INVITE (without To tag), not from "
                f"{'an in-dialog ' if msg.to.tag else 'a '}{msg.method}"
            )
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or timeout < 1):
            raise DialogError(f"a dialog timeout is a whole number of seconds >= 1, not {timeout!r}")
        frm = msg.from_
        if not frm.tag:
            raise DialogError("the INVITE has no From tag (RFC 3261 §8.1.1.3): no dialog")
        dlg = table.create(
            callid=msg.call_id, from_uri=str(frm.uri), from_tag=frm.tag,
            to_uri=str(msg.to.uri), cseq=msg.cseq.seq, contact=first_contact(msg),
            sock=socket_name(rctx.source), lifetime=timeout,
        )
        dlg.invite_ctx = rctx
        rctx.vars[VAR] = dlg
        rctx.record_route(f";did={dlg.id}")
        rctx.on_final(partial(self._final, dlg))
        return dlg

    def _final(self, dlg: Dialog, response: Any) -> None:
        """The INVITE's final response went upstream: a non-2xx ends the dialog at once
        (the timer's check of pending dialogs stays as a safety net)."""
        table = self.table
        if table is not None and response.status >= 300 and dlg.state in _PENDING:
            table.end(dlg, FAILED)

    def match(self, ctx: RequestContext) -> Dialog | None:
        """Find the dialog of an in-dialog request and apply the request to it (once)."""
        table = self.table
        if table is None or not table.dialogs:
            return None
        vars_ = ctx.vars
        if VAR in vars_:
            return vars_[VAR]
        msg = ctx.msg
        try:
            to_tag = msg.to.tag
            if not to_tag:
                return None
            did = ctx.route_params.get("did") if ctx.own_route else self._did(msg)
            found = table.match(msg.call_id, msg.from_.tag, to_tag, did)
            if found is None:
                return None
            dlg, from_caller = found
            method = msg.method
            vars_[VAR] = dlg
            table.request(dlg, from_caller, method, msg.cseq.seq,
                          first_contact(msg) if method in _REFRESHING else None)
        except SipParseError:
            return None
        return dlg

    @staticmethod
    def _did(msg: Any) -> str | None:
        """The ``did`` of the top Route entry (ours, when the request is for us), read
        without consuming the Route set; the table checks Call-ID and tags anyway."""
        value = msg.get("route")
        return did_of(value) if value else None

    async def end_dialog(self, dlg: Dialog) -> dict[str, int | None]:
        if not dlg.to_tag:
            raise DialogError(f"dialog {dlg.id} is not confirmed: it cannot be ended with BYE")
        self.require().end(dlg, TERMINATED)
        return await self.send_byes(dlg)

    async def send_byes(self, dlg: Dialog) -> dict[str, int | None]:
        """BYE to the caller and to the callee, concurrently; their final statuses."""
        from sipline.proxy import LocalRequestError

        server = self.server
        assert server is not None

        async def one(to_callee: bool) -> int | None:
            side = "callee" if to_callee else "caller"
            try:
                bye = build_bye(dlg, to_callee)
                response = await server.send_request(bye)
            except (LocalRequestError, ValueError, SipParseError) as exc:
                log.warning("dialog %s: no BYE to the %s: %s", dlg.id, side, exc)
                return None
            if response.status >= 300:
                log.info("dialog %s: the %s answered the BYE with %d", dlg.id, side,
                         response.status)
            return response.status

        caller, callee = await asyncio.gather(one(False), one(True))
        return {"caller": caller, "callee": callee}

    # ------------------------------------------------------------------ SIP stages
    @hookimpl
    def route_request(self, ctx: RequestContext) -> None:
        """Observe, never decide: create (``auto_create``) or match, then decline."""
        table = self.table
        if table is None:
            return
        msg = ctx.msg
        try:
            initial = not msg.to.tag
        except SipParseError:
            return
        if initial:
            if self.config.auto_create and msg.method == "INVITE" and VAR not in ctx.vars:
                try:
                    self.create(ctx)
                except DialogError as exc:
                    log.info("dialog not created: %s", exc)
        elif table.dialogs:
            self.match(ctx)

    @hookimpl
    def route_reply(self, ctx: ReplyContext) -> None:
        table = self.table
        if table is None or not table.dialogs:
            return
        msg = ctx.msg
        request = ctx.request
        try:
            dlg = ctx.vars.get(VAR)
            if dlg is not None and request is not None and not request.to.tag:
                self._invite_response(dlg, ctx)
                return
            if msg.status < 200:
                return
            method = msg.cseq.method
            if dlg is not None:  # an in-dialog request matched on its way out
                if method in _REFRESHING and msg.status < 300:
                    from_caller = msg.from_.tag == dlg.from_tag
                    table.answered(dlg, from_caller, method, msg.status, first_contact(msg))
                return
            if request is None:
                # Not our transaction (another worker's, or a stateless relay): only a
                # BYE's answer is worth acting on; the dialog is over either way.
                if method == "BYE":
                    found = table.match(msg.call_id, msg.from_.tag, msg.to.tag)
                    if found is not None:
                        table.end(found[0], TERMINATED)
                return
            if not request.to.tag:
                return
            found = table.match(msg.call_id, msg.from_.tag, msg.to.tag)
            if found is None:
                return
            # Relayed without this plugin seeing the request (the script relayed it
            # itself): catch up now, at its final response.
            dlg, from_caller = found
            ctx.vars[VAR] = dlg
            table.request(dlg, from_caller, method, request.cseq.seq,
                          first_contact(request) if method in _REFRESHING else None)
            if not dlg.ended and method in _REFRESHING and msg.status < 300:
                table.answered(dlg, from_caller, method, msg.status, first_contact(msg))
        except SipParseError:
            return

    def _invite_response(self, dlg: Dialog, ctx: ReplyContext) -> None:
        table = self.table
        assert table is not None
        msg = ctx.msg
        status = msg.status
        dlg.relayed = True
        if status < 200:
            if status > 100:
                table.provisional(dlg, msg.to.tag)
            return
        if status < 300:
            if dlg.state not in _PENDING:
                return  # a second 2xx (forking): the first one made the dialog
            to_tag = msg.to.tag
            if not to_tag:
                log.info("dialog %s: 2xx without a To tag, ignored", dlg.id)
                return
            sets = split_route_set(msg.get_list("record-route"),
                                   lambda value: self._is_ours(value, dlg))
            if sets is None:
                log.debug("dialog %s: we are not in the 2xx's Record-Route", dlg.id)
                sets = ((), ())
            table.confirm(dlg, to_tag=to_tag, contact=first_contact(msg),
                          caller_route_set=sets[0], callee_route_set=sets[1],
                          sock=socket_name(ctx.source))
            return
        # A final >= 300 from one branch: the transaction may still fork on (failure
        # route); look once the proxy has decided, later in this loop iteration.
        if dlg.state in _PENDING:
            asyncio.get_running_loop().call_soon(self._settle, dlg)

    def _is_ours(self, value: str, dlg: Dialog) -> bool:
        """Whether a Record-Route entry is ours: our cookie, or (without any) our address."""
        did = did_of(value)
        if did is not None:
            return did == dlg.id
        server = self.server
        try:
            uri = parse_name_addr(value, what="Record-Route").uri
        except SipParseError:
            return False
        host = getattr(uri, "host", None)
        return bool(host and server is not None and server.is_local(host, uri.port or 5060))

    def _settle(self, dlg: Dialog) -> None:
        table = self.table
        if table is not None and dlg.state in _PENDING and self._outcome(dlg):
            table.end(dlg, FAILED)

    @staticmethod
    def _outcome(dlg: Dialog) -> bool | None:
        """What the INVITE's transaction shows: True ended without 2xx, False running."""
        ctx = dlg.invite_ctx
        if ctx is None:
            return None
        rc = ctx.response_context
        if rc is not None:
            dlg.relayed = True
            return bool(rc.final_sent)
        # Released: the final response went upstream (and it was no 2xx, which would
        # have confirmed the dialog on its way through route_reply).
        return True if dlg.relayed else None

    # ------------------------------------------------------------------ timer
    @hookimpl
    def timer(self, server: Server) -> None:
        table = self.table
        if table is None:
            return
        now = table.clock()
        table.check_pending(now, self._outcome)
        for dlg in table.expire_due(now):
            if dlg.bye_on_timeout and dlg.to_tag:
                server.spawn(self.send_byes(dlg))
        storage = self.storage
        if (storage is not None and storage.periodic
                and now - self._last_flush >= self.config.write_back_interval):
            self._last_flush = now
            storage.flush()


def api(server: Server) -> DialogApi:
    """The dialog API of a server whose ``[server] plugins`` enable ``dialog``.

    :raises LookupError: when the dialog plugin is not enabled.
    """
    registered = server.pm.get_plugin(NAME)
    plugin = getattr(registered, "plugin", registered)
    if not isinstance(plugin, DialogPlugin):
        raise LookupError(  # noqa: TRY004 - a missing plugin, not a wrong argument
            "the dialog plugin is not enabled: add \"dialog\" to [server] plugins "
            "(pip install sipline-dialog)"
        )
    plugin.prepare(server)
    return plugin.api


plugin = DialogPlugin()

# The entry point names this module: pluggy registers the module object, so the hooks
# must be module-level names bound to the one plugin instance.
config_model = plugin.config_model
startup = plugin.startup
shutdown = plugin.shutdown
register_script_api = plugin.register_script_api
register_statistics = plugin.register_statistics
register_mi_commands = plugin.register_mi_commands
route_request = plugin.route_request
route_reply = plugin.route_reply
timer = plugin.timer
