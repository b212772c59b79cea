"""The load_balancer plugin's hook implementations (entry point ``load_balancer``).

Where the plugin sees a call:

- ``ctx.lb.start(group, resources, flags)`` in the routing script (or the plugin's own
  ``route_request`` with ``route_invites``) picks a destination, creates the INVITE's
  dialog through the dialog plugin's API, counts the call on the destination and sets
  ``ctx.dst``; the session is kept in ``ctx.vars`` (for ``lb_next`` in the failure
  route) and by dialog id (for the end of the call);
- ``ctx.lb.next()`` in a failure handler (or the plugin's ``route_failure`` with
  ``route_invites``) moves the call to the next destination;
- the dialog's ``ended`` event (BYE, expiry, failed INVITE) releases the counts.

The destinations live in memory (:class:`~sipline_load_balancer.balancer.Balancer`),
loaded at startup from the ``load_balancer`` table or the TOML file, reloaded by MI
``lb_reload``; probing runs in a background task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sipline.hooks import hookimpl
from sipline.routing.context import FailureContext

from sipline_load_balancer.balancer import (
    FAILURES,
    Balancer,
    LbError,
    LbResult,
    Session,
)
from sipline_load_balancer.config import LoadBalancerConfig
from sipline_load_balancer.destinations import (
    Destination,
    DestinationSpec,
    LoadBalancerError,
    format_resources,
)

if TYPE_CHECKING:
    from sipline.routing.context import RequestContext
    from sipline.server import Server

NAME = "load_balancer"
#: Where a transaction's load-balancing session is kept in ``ctx.vars``.
VAR = "sipline_load_balancer"
#: Dialog variable recording where the call is counted, so that the counts are rebuilt
#: when dialogs are reloaded from the database after a restart: [dst id, dst uri, resources].
DLG_VAR = "lb"

log = logging.getLogger("sipline.plugin.load_balancer")


def _request_ctx(ctx: Any) -> Any:
    """The request context behind a failure context (the others are their own)."""
    return ctx.request if type(ctx) is FailureContext else ctx


class LoadBalancerApi:
    """``ctx.lb`` in routing scripts (OpenSIPS load_balancer functions)."""

    __slots__ = ("_ctx", "_plugin")

    def __init__(self, plugin: LoadBalancerPlugin, ctx: Any) -> None:
        self._plugin = plugin
        self._ctx = ctx

    def start(self, group: int, resources: str, flags: str = "") -> LbResult:
        """OpenSIPS ``lb_start(group, resources, flags)``: pick the destination of
        ``group`` with the most free capacity for every resource of ``resources``
        (``"pstn;transc"``), count the call on it until its dialog ends, set ``ctx.dst``.

        Flags: ``r`` relative free capacity (a share of the capacity instead of free
        slots), ``n`` also use destinations without free capacity. Returns a result
        that is falsy when no destination was set: ``error`` is
        ``LbError.NO_DESTINATION`` (status 500: nothing in the group offers these
        resources), ``NO_CAPACITY`` or ``DISABLED`` (503).
        """
        return self._plugin.start(self._ctx, group, resources, flags)

    def next(self) -> LbResult:
        """OpenSIPS ``lb_next()``: in a failure handler, move the call to the next
        destination (not yet tried, most free capacity now), releasing the old one's
        counts and setting ``ctx.dst``. Falsy when none is left (``EXHAUSTED``,
        ``NO_CAPACITY``, ``DISABLED``) or ``start`` was not called (``NOT_STARTED``)."""
        return self._plugin.next(self._ctx)

    def start_or_next(self, group: int, resources: str, flags: str = "") -> LbResult:
        """OpenSIPS ``lb_start_or_next``: ``next()`` when started, else ``start(...)``."""
        if self.is_started():
            return self.next()
        return self.start(group, resources, flags)

    def reset(self) -> bool:
        """OpenSIPS ``lb_reset()``: stop counting this call and forget its session."""
        return self._plugin.reset(self._ctx)

    def is_started(self) -> bool:
        """OpenSIPS ``lb_is_started()``: ``start`` (or ``count_call``) ran for this call."""
        return self._plugin.session(self._ctx) is not None

    def count_call(self, ip: str, port: int, group: int, resources: str,
                   undo: bool = False) -> bool:
        """OpenSIPS ``lb_count_call(ip, port, group, resources, undo)``: count this call
        on the destination at ``ip:port`` (say, a call that comes *from* it) without
        choosing one and without a capacity check; ``undo=True`` stops counting it.
        False when no destination of ``group`` is at that address."""
        return self._plugin.count_call(self._ctx, ip, port, group, resources, undo)

    def is_destination(self, ip: str, port: int = 5060, group: int | None = None,
                       active: bool = False) -> bool:
        """OpenSIPS ``lb_is_destination``: whether ``ip:port`` is a destination (of
        ``group``; ``active``: and enabled)."""
        return self._plugin.require().find(ip, int(port), group, active) is not None

    def disable_dst(self) -> bool:
        """OpenSIPS ``lb_disable_dst()``: disable the call's current destination (probing
        enables it again when it is probed; otherwise ``lb_status`` does)."""
        return self._plugin.disable_dst(self._ctx)

    @property
    def destination(self) -> Destination | None:
        """The destination the call is counted on now (None: none)."""
        session = self._plugin.session(self._ctx)
        return session.dst if session is not None and session.counted else None


class LoadBalancerPlugin:
    """State of one worker: the destinations, the calls counted, probing, MI."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.config = LoadBalancerConfig()
        self.balancer: Balancer | None = None
        #: Sessions of the calls being counted, by dialog id (released when it ends).
        self.calls: dict[str, Session] = {}
        self.dialogs: Any = None
        self._register_stat: Any = None
        self._dst_stats: set[int] = set()
        self._counters: dict[str, Any] = {}
        self._auto: Any = None
        self._failover: frozenset[int] = frozenset()
        self._reloading: asyncio.Lock | None = None

    def require(self) -> Balancer:
        if self.balancer is None:
            raise LoadBalancerError("the load_balancer plugin is not started")
        return self.balancer

    # ------------------------------------------------------------------ lifecycle
    @hookimpl
    def config_model(self) -> type[LoadBalancerConfig]:
        return LoadBalancerConfig

    @hookimpl
    def startup(self, server: Server) -> None:
        self.server = server
        self.config = config = server.plugin_config(NAME) or LoadBalancerConfig()
        self.calls = {}
        self._reloading = asyncio.Lock()
        self.dialogs = _dialog_api(server)
        self.dialogs.subscribe("ended", self._ended)
        specs = config.destination_specs()
        if specs is None:
            specs, errors = self._read_table(server)
            for error in errors:
                log.error("%s", error)
        self.balancer = Balancer(specs)
        self._recount()
        self._register_destination_stats()
        auto = config.route_invites
        if auto is not None:
            self._auto = (auto.group, self.balancer.requested(auto.resources), auto.flags)
            self._failover = auto.failover_statuses()
        else:
            self._auto = None
        if config.probing_interval > 0:
            from sipline_load_balancer.probing import Prober

            prober = Prober(server, self.require, config, on_probe=self._probed)
            server.spawn(prober.run())
        log.info("load_balancer: %d destination(s) in %d group(s) from %s", len(self.balancer),
                 len(self.balancer.groups),
                 "the configuration" if config.destinations is not None else "the database")

    @staticmethod
    def _read_table(server: Server) -> tuple[list[DestinationSpec], list[str]]:
        from sipline.db import display_url, engine_for
        from sqlalchemy.exc import SQLAlchemyError

        from sipline_load_balancer.storage import read_destinations

        try:
            return read_destinations(engine_for(server.config))
        except SQLAlchemyError as exc:
            raise RuntimeError(
                f"cannot read the load_balancer table of "
                f"{display_url(server.config.database_url)} (has `sipline db upgrade` run?): "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from exc

    def _recount(self) -> None:
        """Count the calls of dialogs that exist already (reloaded from the database by
        the dialog plugin, which must come before this one in ``[server] plugins``)."""
        balancer = self.require()
        for dlg in self.dialogs.dialogs():
            mark = dlg.vars.get(DLG_VAR)
            if not isinstance(mark, list) or len(mark) != 3 or dlg.id in self.calls:
                continue
            dst = balancer.get(mark[0]) if isinstance(mark[0], int) else None
            if dst is None or dst.uri != mark[1]:
                continue
            try:
                resources = balancer.requested(mark[2])
            except LoadBalancerError:
                continue
            session = Session(dst.group_id, resources, False, False, dlg)
            session.hold(dst)
            self.calls[dlg.id] = session

    @hookimpl
    def shutdown(self) -> None:
        if self.dialogs is not None:
            self.dialogs.unsubscribe("ended", self._ended)

    # ------------------------------------------------------------------ registries
    @hookimpl
    def register_script_api(self, register: Any) -> None:
        register("lb", self._script_api)

    def _script_api(self, ctx: Any) -> LoadBalancerApi:
        if self.balancer is None:
            raise LoadBalancerError("the load_balancer plugin is not started")
        return LoadBalancerApi(self, ctx)

    @hookimpl
    def register_statistics(self, register: Any) -> None:
        self._register_stat = register
        self._dst_stats = set()
        counters = (
            ("started_calls", "calls given a destination by lb_start"),
            ("failovers", "calls moved to another destination by lb_next"),
            ("no_capacity", "lb_start/lb_next refused: no destination had a free slot"),
            ("no_destination",
             "lb_start/lb_next refused: no destination offered the resources, or all down"),
            ("probes_sent", "probes sent to destinations"),
            ("probes_failed", "probes not answered with an alive reply"),
        )
        self._counters = {
            name: register(f"load_balancer:{name}", kind="counter", help=text)
            for name, text in counters
        }
        register("load_balancer:active_calls", kind="gauge", per_worker=True,
                 function=lambda: len(self.calls), help="calls counted on a destination now")
        register("load_balancer:destinations", kind="gauge",
                 function=lambda: len(self.balancer) if self.balancer else 0,
                 help="destinations loaded")
        register("load_balancer:enabled_destinations", kind="gauge",
                 function=lambda: sum(d.enabled for d in self.balancer) if self.balancer else 0,
                 help="destinations that may be chosen")

    def _register_destination_stats(self) -> None:
        """``load_balancer:dst_<id>_load`` / ``_enabled`` gauges and ``_calls`` counters.

        Registered for the destinations loaded at startup and those ``lb_reload`` adds
        (statistics cannot be removed: a removed destination's read 0 until a restart).
        """
        register = self._register_stat
        if register is None or self.balancer is None:
            return
        for dst in self.balancer:
            if dst.id in self._dst_stats:
                continue
            self._dst_stats.add(dst.id)
            ident = dst.id
            register(f"load_balancer:dst_{ident}_load", kind="gauge",
                     function=lambda i=ident: self._dst_value(i, "calls"),
                     help=f"calls counted on destination {ident} now")
            register(f"load_balancer:dst_{ident}_enabled", kind="gauge",
                     function=lambda i=ident: self._dst_value(i, "enabled"),
                     help=f"1 when destination {ident} may be chosen")
            register(f"load_balancer:dst_{ident}_calls", kind="counter",
                     function=lambda i=ident: self._dst_value(i, "started"),
                     help=f"calls started on destination {ident}")

    def _dst_value(self, ident: int, attr: str) -> int:
        dst = self.balancer.get(ident) if self.balancer is not None else None
        return int(getattr(dst, attr)) if dst is not None else 0

    def _count(self, name: str) -> None:
        counter = self._counters.get(name)
        if counter is not None:
            counter.inc()

    def _probed(self, dst: Destination, alive: bool) -> None:
        self._count("probes_sent")
        if not alive:
            self._count("probes_failed")

    @hookimpl
    def register_mi_commands(self, register: Any) -> None:
        register("load_balancer:reload", self.mi_reload, alias="lb_reload", params={},
                 help="re-read the destinations (table or TOML), keeping the counts of "
                      "unchanged ones")
        register("load_balancer:status", self.mi_status, alias="lb_status",
                 params={"destination_id": int, "status": int},
                 help="show a destination's state, or force it: 0 off, 1 on")
        register("load_balancer:list", self.mi_list, alias="lb_list", params={},
                 help="every destination with its resources, load and state")
        register("load_balancer:resize", self.mi_resize, alias="lb_resize",
                 params={"destination_id": int, "resource": str, "capacity": int},
                 help="change the capacity of one resource of a destination")

    # ------------------------------------------------------------------ MI
    def _mi_destination(self, destination_id: int) -> Destination:
        from sipline.mi.jsonrpc import MIError

        dst = self.require().get(destination_id)
        if dst is None:
            raise MIError(f"no destination {destination_id} (lb_list shows them)")
        return dst

    def mi_list(self) -> dict[str, Any]:
        return {"Destinations": [dst.info() for dst in self.require()]}

    def mi_status(self, destination_id: int, status: int | None = None) -> dict[str, Any]:
        dst = self._mi_destination(destination_id)
        if status is not None:
            if status not in (0, 1):
                raise ValueError(f"status is 0 (disable) or 1 (enable), not {status}")
            before = dst.enabled
            Balancer.set_status(dst, bool(status))
            if before != dst.enabled:
                log.warning("load_balancer: destination %d (%s) %s by lb_status", dst.id,
                            dst.uri, "enabled" if dst.enabled else "disabled")
        return {"id": dst.id, "uri": dst.uri, "enabled": int(dst.enabled),
                "state": dst.info()["state"]}

    def mi_resize(self, destination_id: int, resource: str, capacity: int) -> dict[str, Any]:
        dst = self._mi_destination(destination_id)
        if resource not in dst.caps:
            raise ValueError(f"destination {destination_id} has no resource {resource!r} "
                             f"(it has {format_resources(dst.caps)})")
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        dst.caps[resource] = capacity
        return dst.info()

    async def mi_reload(self) -> dict[str, Any]:
        from sipline.mi.jsonrpc import MIError

        server = self.server
        assert server is not None and self._reloading is not None
        async with self._reloading:
            try:
                specs, errors = await asyncio.to_thread(self._read_source, server)
            except (LoadBalancerError, RuntimeError, OSError) as exc:
                raise MIError(f"destinations not reloaded, the current ones stay: {exc}") from exc
            for error in errors:
                log.error("%s", error)
            try:
                report = self.require().load(specs)
            except LoadBalancerError as exc:
                raise MIError(f"destinations not reloaded, the current ones stay: {exc}") from exc
        report.errors = errors
        self._register_destination_stats()
        log.info("load_balancer: reloaded %d destination(s): kept %s, added %s, replaced %s, "
                 "removed %s", len(self.require()), report.kept, report.added, report.replaced,
                 report.removed)
        return {"destinations": len(self.require()), **report.as_dict()}

    def _read_source(self, server: Server) -> tuple[list[DestinationSpec], list[str]]:
        """Where the destinations come from now (runs in a thread: file or SQL I/O)."""
        if self.config.destinations is None:
            return self._read_table(server)
        source = server.config.source
        if source is None:
            raise LoadBalancerError("the destinations come from the built-in configuration: "
                                    "there is no file to re-read")
        from pydantic import ValidationError
        from sipline.config import load_toml

        section = load_toml(source).get("plugins", {}).get(NAME, {})
        try:
            fresh = LoadBalancerConfig.model_validate(section)
        except ValidationError as exc:
            raise LoadBalancerError(f"{source}: [plugins.{NAME}]: {exc}") from None
        specs = fresh.destination_specs()
        if specs is None:
            raise LoadBalancerError(
                f"{source}: [plugins.{NAME}] has no destinations any more (switching to the "
                "table needs a restart)")
        return specs, []

    # ------------------------------------------------------------------ sessions
    def session(self, ctx: Any) -> Session | None:
        """The session of ``ctx``'s call: its transaction's, else its dialog's."""
        rctx = _request_ctx(ctx)
        vars_ = getattr(rctx, "vars", None)
        session = vars_.get(VAR) if vars_ is not None else None
        if session is None and self.dialogs is not None and vars_ is not None:
            dlg = self.dialogs.current(rctx)
            if dlg is not None:
                session = self.calls.get(dlg.id)
        return session

    def start(self, ctx: Any, group: int, resources: Any, flags: str = "") -> LbResult:
        balancer = self.require()
        rctx = _request_ctx(ctx)
        wanted = balancer.requested(resources)
        relative, negative = balancer.flags(flags)
        dst, error = balancer.select(group, wanted, relative, negative)
        vars_ = rctx.vars
        old = vars_.get(VAR)
        if dst is None:
            assert error is not None
            self._count("no_capacity" if error is LbError.NO_CAPACITY else "no_destination")
            return FAILURES[error]
        dlg = self.dialogs.create(rctx)  # raises DialogError for anything but an initial INVITE
        if old is not None:
            old.release()
        session = Session(group, wanted, relative, negative, dlg)
        session.hold(dst)
        vars_[VAR] = session
        self.calls[dlg.id] = session
        dlg.vars[DLG_VAR] = [dst.id, dst.uri, resources if isinstance(resources, str)
                             else ";".join(wanted)]
        rctx.dst = dst.uri  # validated when loaded: no need for set_dst's parse
        counter = self._counters.get("started_calls")
        if counter is not None:
            counter.inc()
        return LbResult(True, None, dst)

    def next(self, ctx: Any) -> LbResult:
        balancer = self.require()
        rctx = _request_ctx(ctx)
        session = rctx.vars.get(VAR)
        if session is None:
            return FAILURES[LbError.NOT_STARTED]
        dlg = session.dialog
        if dlg is None or dlg.ended:
            # Over already (nothing would release counts taken now), or never counted.
            session.release()
            return FAILURES[LbError.NOT_STARTED]
        if session.dst is not None:
            session.tried.append(session.dst)
        session.release()
        session.dst = None
        dst, error = balancer.select(session.group_id, session.resources, session.relative,
                                     session.negative, exclude=session.tried)
        if dst is None:
            assert error is not None
            self._count("no_capacity" if error is LbError.NO_CAPACITY else "no_destination")
            return FAILURES[error]
        session.hold(dst)
        dlg.vars[DLG_VAR] = [dst.id, dst.uri, ";".join(session.resources)]
        self.calls[dlg.id] = session
        rctx.dst = dst.uri
        self._count("failovers")
        return LbResult(True, None, dst)

    def reset(self, ctx: Any) -> bool:
        session = self.session(ctx)
        if session is None:
            return False
        session.release()
        vars_ = _request_ctx(ctx).vars
        if vars_.get(VAR) is session:
            del vars_[VAR]
        dlg = session.dialog
        if dlg is not None:
            if self.calls.get(dlg.id) is session:
                del self.calls[dlg.id]
            if not dlg.ended and DLG_VAR in dlg.vars:
                del dlg.vars[DLG_VAR]
        return True

    def count_call(self, ctx: Any, ip: str, port: int, group: int, resources: Any,
                   undo: bool = False) -> bool:
        balancer = self.require()
        dst = balancer.find(ip, int(port), group)
        if dst is None:
            return False
        wanted = balancer.requested(resources)
        if undo:
            session = self.session(ctx)
            if session is None or session.dst is not dst:
                return False
            return self.reset(ctx)
        rctx = _request_ctx(ctx)
        dlg = self.dialogs.create(rctx)
        old = rctx.vars.get(VAR)
        if old is not None:
            old.release()
        session = Session(group, wanted, False, False, dlg)
        session.hold(dst)
        rctx.vars[VAR] = session
        self.calls[dlg.id] = session
        dlg.vars[DLG_VAR] = [dst.id, dst.uri, ";".join(wanted)]
        return True

    def disable_dst(self, ctx: Any) -> bool:
        session = self.session(ctx)
        dst = session.tried[-1] if session is not None and session.dst is None and \
            session.tried else (session.dst if session is not None else None)
        if dst is None:
            return False
        changed = Balancer.disable_by_script(dst)
        if changed:
            log.warning("load_balancer: destination %d (%s) disabled by lb_disable_dst",
                        dst.id, dst.uri)
        return changed

    def _ended(self, dlg: Any, event: str) -> None:
        session = self.calls.pop(dlg.id, None)
        if session is not None:
            session.release()

    # ------------------------------------------------------------------ default behaviour
    @hookimpl
    def route_request(self, ctx: RequestContext) -> Any:
        """With ``route_invites``: load-balance every initial INVITE for a local domain."""
        auto = self._auto
        if auto is None:
            return None
        msg = ctx.msg
        if msg.method != "INVITE" or msg.to.tag or msg.has("route") or VAR in ctx.vars:
            return None
        if not ctx.is_myself():
            return None
        group, resources, flags = auto
        result = self.start(ctx, group, resources, flags)
        if not result:
            return ctx.reply(result.status, result.reason)
        ctx.vars[VAR].auto = True
        return ctx.relay()

    @hookimpl
    def route_failure(self, ctx: FailureContext) -> Any:
        """With ``route_invites``: on a failover response, try the next destination."""
        if self._auto is None:
            return None
        session = ctx.request.vars.get(VAR)
        if session is None or not session.auto or ctx.response.status not in self._failover:
            return None
        if not self.next(ctx):
            return None  # nothing left: the best response goes upstream
        return ctx.relay()


def _dialog_api(server: Server) -> Any:
    try:
        from sipline_dialog import api
    except ImportError:
        raise RuntimeError(
            "the load_balancer plugin counts calls with the dialog plugin: "
            "pip install sipline-dialog and add \"dialog\" to [server] plugins "
            "(before \"load_balancer\")"
        ) from None
    try:
        return api(server)
    except LookupError as exc:
        raise RuntimeError(f"the load_balancer plugin needs dialogs: {exc}") from None


plugin = LoadBalancerPlugin()

# The entry point names this module: pluggy registers the module object, so the hooks
# must be module-level names bound to the one plugin instance.
config_model = plugin.config_model
startup = plugin.startup
shutdown = plugin.shutdown
register_script_api = plugin.register_script_api
register_statistics = plugin.register_statistics
register_mi_commands = plugin.register_mi_commands
route_request = plugin.route_request
route_failure = plugin.route_failure
