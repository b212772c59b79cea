"""The server: listeners, the per-message path, the route stages and lifecycle.

Per-message path (DESIGN §2): transport -> :meth:`Server.on_message` ->
``parse_message`` -> RFC 3261 §18.2.1 Via handling -> ``message_received`` ->
core sanity checks (§16.3, §8.2.2) -> ``route_request`` pipeline (script,
plugins, core default) -> action. Everything on this path is synchronous;
a hook that returns an awaitable gets its own task.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import os
import types
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeGuard

import pluggy

from sipline import __version__
from sipline.config import Config
from sipline.overload import OverloadDetector
from sipline.plugins import HookError, Pipeline
from sipline.proxy import Proxy, Relayed
from sipline.proxy.uac import Uac
from sipline.routing.actions import Drop, Redirect, Reply
from sipline.routing.context import (
    BranchContext,
    ErrorContext,
    FailureContext,
    LocalContext,
    MessageContext,
    ReplyContext,
    RequestContext,
)
from sipline.sip import Request, Response, SipParseError, make_response, parse_message
from sipline.stats import (
    BAD_MSG_HDR,
    DROP_REPLIES,
    DROP_REQUESTS,
    ERR_REQUESTS,
    RCV_REPLIES,
    RCV_REQUESTS,
    SharedSlots,
    Statistics,
    StatisticsError,
    register_core_gauges,
)
from sipline.transport import (
    Source,
    TcpTransport,
    Transport,
    UdpTransport,
    unbracket,
    via_destination,
)

log = logging.getLogger("sipline.server")

#: URI schemes the core routes; anything else gets 416 (RFC 3261 §8.2.2.1).
ROUTABLE_SCHEMES = frozenset({"sip", "sips", "tel"})

_INTERNAL_ERROR = Reply(500, "Server Internal Error")


class StartupError(Exception):
    """The server cannot start; the message says which part failed and why."""


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    if ":" not in a and ":" not in b:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


_AWAITABLE_BY_CLASS: dict[type, bool] = {}


def _awaitable(obj: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable`` from a per-class cache: the ABC check behind it is
    the slow part, and hooks return the same few classes (actions, None) for
    every message. Generators are asked each time: only some are awaitable."""
    if obj is None:
        return False
    cls = type(obj)
    known = _AWAITABLE_BY_CLASS.get(cls)
    if known is None:
        known = inspect.isawaitable(obj)
        if cls is not types.GeneratorType and len(_AWAITABLE_BY_CLASS) < 256:
            _AWAITABLE_BY_CLASS[cls] = known
    return known


class Server:
    """One worker's SIP server: listeners plus the route pipeline."""

    def __init__(
        self,
        config: Config,
        pm: pluggy.PluginManager,
        *,
        reuse_port: bool = False,
        worker: int = 0,
        shared: SharedSlots | None = None,
        mi: bool = False,
    ):
        """``worker`` and ``shared``: this process's row in the statistics memory the
        workers share (created before they fork); ``mi``: this process serves the
        management interface (one process of a multi-worker server)."""
        self.config = config
        self.worker = worker
        #: Statistics (core and plugins); ``counters`` is this worker's row of
        #: slots, incremented on the message path by fixed index.
        self.stats = Statistics(shared, worker)
        self.counters = self.stats.values
        self.mi_enabled = mi
        self.mi: Any = None
        self.pm = pm
        self.pipeline = Pipeline(pm)
        self.reuse_port = reuse_port
        self.log = log
        self.script_api: dict[str, Callable[[Any], Any]] = {}
        self.mi_commands: dict[str, dict[str, Any]] = {}
        self.statistics: dict[str, dict[str, Any]] = {}
        self.transports: list[Transport] = []
        #: Option tags the server (with its plugins) supports (RFC 3261 §19.2).
        self.supported: set[str] = set()
        #: Methods announced in Allow; plugins add theirs at startup.
        self.allowed_methods: set[str] = {"OPTIONS", "ACK", "CANCEL"}
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer_busy: set[str] = set()
        self._stopping: asyncio.Event | None = None
        self._local_hosts: set[str] = set()
        self._local_ports: set[int] = set()
        self._tag_prefix = os.urandom(4).hex()
        srv = config.server
        self._max_size = srv.max_message_size
        self._force_rport = srv.force_rport
        header = f"sipline/{__version__}" if srv.server_header is None else srv.server_header
        self.server_header: tuple[tuple[str, str], ...] = (("Server", header),) if header else ()
        self.proxy = Proxy(self)
        #: Requests sipline originates (probes, BYEs of expired dialogs...).
        self.uac = Uac(self.proxy)
        register_core_gauges(self.stats, self)
        self._transport_index: dict[tuple[str, bool], Transport] = {}
        self.own_routes: frozenset[str] = frozenset()
        #: The same without the closing ``>``: our entries that carry a plugin's
        #: parameters (``;did=...``) start with one of these.
        self.own_route_prefixes: tuple[str, ...] = ()
        #: True while the UDP receive queues are backed up (see _watch_load).
        self.overloaded = False
        self.shed_requests = 0
        self._overload_logged = -1e9
        self._has_message_hooks = bool(self.pipeline.impls("message_received"))
        self._refresh_capabilities()

    # ------------------------------------------------------------- plugin API
    def plugin_config(self, name: str) -> Any:
        """The validated ``[plugins.<name>]`` settings (None if the plugin has none)."""
        return self.config.plugin(name)

    def is_local(self, host: str, port: int | None = None) -> bool:
        """True for a host in ``[server] domains`` or a listen address (and our port)."""
        host = unbracket(host.lower())
        if host not in self._local_hosts:
            if ":" not in host:
                return False
            try:
                host = str(ipaddress.ip_address(host))
            except ValueError:
                return False
            if host not in self._local_hosts:
                return False
        return port is None or port in self._local_ports

    def unsupported(self, tags: list[str]) -> list[str]:
        """The option tags in ``tags`` this server does not support."""
        supported = self.supported
        return [t for t in tags if t not in supported]

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the server keeps track of (and cancels at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refresh_capabilities(self) -> None:
        self.allow_header = ", ".join(sorted(self.allowed_methods))
        # RFC 3261 §11.2: Allow, Accept, Accept-Encoding, Accept-Language and
        # Supported; an empty Supported says "no extensions" explicitly.
        caps = [
            ("Allow", self.allow_header),
            ("Accept", "application/sdp"),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            ("Supported", ", ".join(sorted(self.supported))),
        ]
        self.capability_headers: tuple[tuple[str, str], ...] = tuple(caps)

    # ------------------------------------------------------------- lifecycle
    def _collect_registries(self) -> None:
        owners: dict[str, str] = {}

        def script_api(plugin: str) -> Callable[[str, Callable[[Any], Any]], None]:
            def register(name: str, factory: Callable[[Any], Any]) -> None:
                if not name.isidentifier() or name.startswith("_"):
                    raise StartupError(f"plugin {plugin!r}: script API name {name!r} is invalid")
                if hasattr(RequestContext, name):
                    raise StartupError(
                        f"plugin {plugin!r}: script API name {name!r} shadows ctx.{name}"
                    )
                if name in self.script_api:
                    raise StartupError(
                        f"script API {name!r} is registered by both plugin {owners[name]!r} "
                        f"and plugin {plugin!r}"
                    )
                owners[name] = plugin
                self.script_api[name] = factory

            return register

        def mi(plugin: str) -> Callable[..., None]:
            def register(name: str, function: Callable[..., Any], **meta: Any) -> None:
                if name in self.mi_commands:
                    raise StartupError(
                        f"MI command {name!r} is registered by both plugin "
                        f"{self.mi_commands[name]['plugin']!r} and plugin {plugin!r}"
                    )
                self.mi_commands[name] = {"plugin": plugin, "function": function, **meta}

            return register

        def stats(plugin: str) -> Callable[..., Any]:
            def register(name: str, **meta: Any) -> Any:
                group, sep, stat = name.partition(":")
                if not sep or not group or not stat:
                    raise StartupError(
                        f"plugin {plugin!r}: statistic {name!r} must be named 'group:name'"
                    )
                if name in self.statistics:
                    raise StartupError(
                        f"statistic {name!r} is registered by both plugin "
                        f"{self.statistics[name]['plugin']!r} and plugin {plugin!r}"
                    )
                self.statistics[name] = {"plugin": plugin, **meta}
                try:  # the handle to count with: Counter.inc() (None when computed)
                    return self.stats.register(name, plugin=plugin, **meta)
                except (StatisticsError, TypeError) as exc:
                    raise StartupError(f"plugin {plugin!r}: {exc}") from exc

            return register

        for hook, factory in (
            ("register_script_api", script_api),
            ("register_mi_commands", mi),
            ("register_statistics", stats),
        ):
            for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
                try:
                    impl.function(factory(impl.plugin_name))
                except StartupError:
                    raise
                except Exception as exc:
                    raise StartupError(
                        f"plugin {impl.plugin_name!r} failed in {hook}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc

    async def start(self) -> None:
        """Run startup hooks, then bind every listener."""
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self._stopping = asyncio.Event()
        self.proxy.start(loop)
        self._collect_registries()
        for impl in reversed(self.pm.hook.startup.get_hookimpls()):
            try:
                result = impl.function(self) if impl.argnames else impl.function()
                if _awaitable(result):
                    await result
            except Exception as exc:
                raise StartupError(
                    f"plugin {impl.plugin_name!r} failed to start: {type(exc).__name__}: {exc}"
                ) from exc
        self._refresh_capabilities()
        self.stats.shared.mark_started(self.worker, mi=self.mi_enabled)
        if self.mi_enabled:  # before SIP: answering SIP means MI is up too
            from sipline.mi.service import ManagementInterface

            self.mi = ManagementInterface(self)
            await self.mi.start()
        srv = self.config.server
        self._local_hosts = set(srv.domains)
        for listen in srv.listen:
            if listen.transport == "udp":
                transport: Transport = UdpTransport(
                    listen.host, listen.port, self.on_message, reuse_port=self.reuse_port
                )
            else:
                transport = TcpTransport(
                    listen.host,
                    listen.port,
                    self.on_message,
                    reuse_port=self.reuse_port,
                    max_connections=srv.tcp_max_connections,
                    idle_timeout=srv.tcp_idle_timeout,
                    max_message_size=srv.max_message_size,
                )
            try:
                await transport.start()
            except OSError as exc:
                await self._stop_transports()
                raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
            self.transports.append(transport)
            host = listen.host
            self._local_hosts.add(str(ipaddress.ip_address(host)))
            if ipaddress.ip_address(host).is_loopback:
                self._local_hosts.add("localhost")
            self._local_ports.add(transport.local[1])
            self._transport_index.setdefault((listen.transport, ":" in listen.host), transport)
        #: Our Record-Route values as we write them: loose_route recognises
        #: them in Route headers without parsing.
        self.own_routes = frozenset(self.record_route_value(t) for t in self.transports)
        self.own_route_prefixes = tuple(v[:-1] for v in self.own_routes)
        self.spawn(self._timer_loop())
        if srv.overload_backlog > 0:
            self.spawn(self._watch_load(srv.overload_backlog, srv.overload_sustain))
        for t in self.transports:
            log.info("listening on %s:%s", t.proto, _fmt(t.local))
        if self.stats.shared.workers > 1:  # other workers read this one's function values
            self.spawn(self.stats.publish_every(srv.timer_interval))

    async def _timer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.server.timer_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for impl in reversed(self.pm.hook.timer.get_hookimpls()):
                name = impl.plugin_name
                if name in self._timer_busy:
                    continue  # the previous tick of this plugin is still running
                try:
                    kwargs = {"server": self, "now": now}
                    result = impl.function(*[kwargs[a] for a in impl.argnames])
                except Exception:
                    log.exception("plugin %r failed in timer", name)
                    continue
                if _awaitable(result):
                    self._timer_busy.add(name)
                    self.spawn(self._finish_timer(name, result))

    async def _watch_load(self, fraction: float, sustain: float, interval: float = 0.02) -> None:
        """Set ``overloaded`` while a UDP socket's backlog stays over ``fraction`` of its buffer.

        The backlog is the kernel's own count (one getsockopt per socket and
        tick), so it sees what the event loop's latency cannot: libuv reads
        a bounded batch per iteration, timers keep running on time while the
        queue grows. :class:`~sipline.overload.OverloadDetector` decides.
        """
        udp = [t for t in self.transports if isinstance(t, UdpTransport)]
        detector = OverloadDetector(fraction, sustain, interval)
        while udp:
            await asyncio.sleep(interval)
            over = detector.sample([t.backlog() for t in udp])
            if over != self.overloaded:
                self.overloaded = over
                now = asyncio.get_running_loop().time()
                if over and now - self._overload_logged > 10:
                    # Overload may flap: say it once per 10 s.
                    self._overload_logged = now
                    log.warning(
                        "overloaded: shedding new requests with 503 (%d shed so far)",
                        self.shed_requests,
                    )

    async def _finish_timer(self, name: str, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("plugin %r failed in timer", name)
        finally:
            self._timer_busy.discard(name)

    def reload_script(self) -> None:
        """Swap in a fresh copy of the routing script (MI ``reload_routes``, SIGHUP).

        Transactions in progress keep running: they hold their own state, and
        a failure handler already armed stays the old function. A script
        that fails to load raises :class:`ScriptError` and the old one stays.
        """
        from sipline.plugins import register
        from sipline.routing.script import ScriptError, load_script

        path = self.config.server.script
        if path is None:
            raise ScriptError("no routing script is configured ([server] script)")
        new = load_script(path)
        old = self.pm.get_plugin("script")
        if old is not None:
            self.pm.unregister(name="script")
        try:
            register(self.pm, new, "script")
        except Exception:
            if old is not None:
                self.pm.register(old, name="script")
            raise
        self.pipeline.refresh()
        self._has_message_hooks = bool(self.pipeline.impls("message_received"))
        log.info("routing script %s reloaded", path)

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def wait_stopped(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()

    async def _stop_transports(self) -> None:
        for t in self.transports:
            try:
                await t.stop()
            except Exception:
                log.exception("error stopping %s listener", t.proto)
        self.transports = []

    async def stop(self) -> None:
        """Stop listening, run shutdown hooks (reverse order), cancel tasks."""
        if self.mi is not None:
            await self.mi.stop()
            self.mi = None
        self.stats.shared.mark_stopped(self.worker)
        await self._stop_transports()
        self.proxy.stop()
        for impl in self.pm.hook.shutdown.get_hookimpls():
            try:
                result = impl.function(self) if impl.argnames else impl.function()
                if _awaitable(result):
                    await asyncio.wait_for(result, timeout=10)
            except Exception:
                log.exception("plugin %r failed in shutdown", impl.plugin_name)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------- per-message path
    def on_message(self, data: bytes, source: Source) -> None:
        """Entry point for every complete message a transport received."""
        if len(data) <= 4 and not data.strip():
            return  # CRLF keep-alive over UDP
        try:
            msg = parse_message(data, stream=source.proto != "udp", max_size=self._max_size)
        except SipParseError as exc:
            self._on_parse_error(exc, data, source)
            return
        if type(msg) is Request:
            self.counters[RCV_REQUESTS] += 1
            self._on_request(msg, source)
        else:
            self.counters[RCV_REPLIES] += 1
            self._on_response(msg, source)  # type: ignore[arg-type]

    def _on_parse_error(self, exc: SipParseError, data: bytes, source: Source) -> None:
        self.counters[BAD_MSG_HDR] += 1
        ctx = ErrorContext(exc, data, source, self)
        try:
            index, action = self.pipeline.first_at("route_error", ctx)
        except HookError as err:
            # Unlike route_request, a failing route_error drops: the input
            # was already broken and a 500 would blame the server.
            log.error("%s", err, exc_info=err.exc)
            return
        partial = exc.message
        if _awaitable(action):
            self.spawn(self._finish_error(ctx, index, action, partial, source))
            return
        self._answer_error(action, partial, source, exc)

    async def _finish_error(
        self, ctx: ErrorContext, index: int, awaitable: Any, msg: Any, source: Source
    ) -> None:
        try:
            action = await self.pipeline.settle("route_error", ctx, index, awaitable)
        except HookError as err:
            log.error("%s", err, exc_info=err.exc)
            return
        self._answer_error(action, msg, source, None)

    def _answer_error(
        self, action: Any, msg: Any, source: Source, exc: SipParseError | None
    ) -> None:
        if type(msg) is not Request or msg.method == "ACK" or type(action) not in (Reply, Redirect):
            if exc is not None:
                log.debug("dropped unparsable message from %s: %s", source, exc.reason)
            return
        # The request's Via was not validated: answer where it came from
        # (the same connection for TCP), never where its headers point.
        if type(action) is Redirect:
            headers = _contact_headers(action.contacts) + action.headers
            self.reply(msg, source, action.status, action.reason, headers, to_source=True)
        else:
            self.reply(
                msg, source, action.status, action.reason, action.headers, action.body,
                to_source=True,
            )

    def _fix_via(self, msg: Request, source: Source) -> None:
        """RFC 3261 §18.2.1 and RFC 3581: record where the request came from."""
        via = msg.top_via
        if via is None:
            return
        ip, port = source.remote
        params = via.params
        changed = False
        if not _same_address(unbracket(via.host), ip) or "rport" in params:
            if params.get("received") != ip:
                params["received"] = ip
                changed = True
        if "rport" in params or self._force_rport:
            if params.get("rport") != str(port):
                params["rport"] = str(port)
                changed = True
        if changed:
            msg.set_top_via(via)

    def _on_request(self, msg: Request, source: Source) -> None:
        self._fix_via(msg, source)
        if self.proxy.absorb(msg, source):
            return  # a retransmission, an ACK for a non-2xx, or a CANCEL handled
        if self._has_message_hooks:
            ctx = MessageContext(msg, source, self)
            try:
                index, action = self.pipeline.first_at("message_received", ctx)
            except HookError as err:
                self._hook_failed(err, msg, source)
                return
            if action is not None:
                if _awaitable(action):
                    self.spawn(self._resume("message_received", ctx, index, action, msg, source))
                else:
                    self._execute(action, msg, source)
                return
        self._process_request(msg, source)

    def _process_request(self, msg: Request, source: Source) -> None:
        """Core sanity checks (RFC 3261 §16.3, §8.2.2), then the route_request pipeline."""
        method = msg.method
        if self.overloaded and method not in ("ACK", "CANCEL") and not msg.to.tag:
            # Shed new work, keep finishing what is in progress (calls, BYEs).
            self.shed_requests += 1
            self.reply(msg, source, 503, "Server Overloaded", (("Retry-After", "2"),))
            return
        try:
            if msg.uri.scheme not in ROUTABLE_SCHEMES:
                if method != "ACK":
                    self.reply(msg, source, 416, "Unsupported URI Scheme")
                return
            if msg.max_forwards == 0 and method != "ACK":
                self.reply(msg, source, 483, "Too Many Hops")
                return
            unsupported = self.unsupported(msg.proxy_require)
            if unsupported and method not in ("ACK", "CANCEL"):
                self.reply(
                    msg, source, 420, "Bad Extension", (("Unsupported", ", ".join(unsupported)),)
                )
                return
            ctx = RequestContext(msg, source, self)
            index, action = self.pipeline.first_at("route_request", ctx)
        except HookError as err:
            self._hook_failed(err, msg, source)
            return
        except SipParseError as exc:
            # A lazily parsed header turned out malformed.
            if method != "ACK":
                self.reply(msg, source, exc.status, exc.reason)
            return
        if _awaitable(action):
            self.spawn(self._resume("route_request", ctx, index, action, msg, source))
        elif action is not None:
            self._execute_request(action, msg, source, ctx)

    def _hook_failed(self, err: HookError, msg: Request, source: Source) -> None:
        self.counters[ERR_REQUESTS] += 1
        log.error("%s", err, exc_info=err.exc)
        if msg.method != "ACK":
            self._execute(_INTERNAL_ERROR, msg, source)

    async def _resume(
        self, stage: str, ctx: Any, index: int, awaitable: Any, msg: Request, source: Source
    ) -> None:
        """Finish a request's firstresult stage whose implementation returned an awaitable."""
        try:
            action = await self.pipeline.settle(stage, ctx, index, awaitable)
        except HookError as err:
            self._hook_failed(err, msg, source)
            return
        except SipParseError as exc:
            if msg.method != "ACK":
                self.reply(msg, source, exc.status, exc.reason)
            return
        if action is None:
            if stage == "message_received":
                self._process_request(msg, source)
            return
        if type(ctx) is RequestContext:
            self._execute_request(action, msg, source, ctx)
        else:
            self._execute(action, msg, source, None)

    def _execute_request(
        self, action: Any, msg: Request, source: Source, ctx: RequestContext
    ) -> None:
        """:meth:`_execute` for a route_request decision, then let go of the script APIs of
        a request that is finished (one that was relayed lets go with its transaction)."""
        self._execute(action, msg, source, ctx)
        if ctx.response_context is None:
            ctx.release_script_apis()

    def _execute(
        self, action: Any, msg: Request, source: Source, ctx: RequestContext | None = None
    ) -> None:
        cls = type(action)
        if cls is Relayed:
            if action.ok or action.error is None or not action.error.status:
                return  # relayed, or the existing transaction answers
            action = Reply(action.error.status, action.error.reason)
            cls = Reply
        if cls is Drop:
            self.counters[DROP_REQUESTS] += 1
            return
        if msg.method == "ACK":
            return  # an ACK is never answered
        if cls is Reply:
            status, reason, headers, body = action.status, action.reason, action.headers, action.body
        elif cls is Redirect:
            status, reason, body = action.status, action.reason, b""
            headers = _contact_headers(action.contacts) + action.headers
        else:
            log.error("a route stage returned %r, which is not an action", action)
            status, reason, headers, body = 500, "Server Internal Error", (), b""
        rc = ctx.response_context if ctx is not None else None
        if rc is not None:
            rc.reply(status, reason, headers, body)  # through the server transaction
        elif ctx is not None and ctx.final_callbacks and status >= 200:
            response = self.local_response(msg, status, reason, headers, body)
            self.send_response(response.to_bytes(), msg, source)
            self.run_final_callbacks(ctx, response)
        else:
            self.reply(msg, source, status, reason, headers, body)

    def run_final_callbacks(self, ctx: RequestContext, response: Response) -> None:
        """Call the ``ctx.on_final`` callbacks once, with the final response sent upstream."""
        callbacks, ctx.final_callbacks = ctx.final_callbacks, None
        for callback in callbacks or ():
            try:
                callback(response)
            except Exception:  # a plugin's bug must not stop the others or the message
                log.exception("on_final callback %r failed", callback)

    def _on_response(self, msg: Response, source: Source) -> None:
        if self._has_message_hooks:
            ctx = MessageContext(msg, source, self)
            try:
                index, action = self.pipeline.first_at("message_received", ctx)
            except HookError as err:
                log.error("%s", err, exc_info=err.exc)
                return
            if _awaitable(action):
                self.spawn(self._resume_response(ctx, index, action))
                return
            if action is not None:
                self.counters[DROP_REPLIES] += 1
                return  # any action on a response means: stop here
        if self.proxy.on_response(msg, source):
            return  # a client transaction took it (route_reply runs from there)
        self._route_reply(msg, source)

    async def _resume_response(self, ctx: MessageContext, index: int, awaitable: Any) -> None:
        try:
            action = await self.pipeline.settle("message_received", ctx, index, awaitable)
        except HookError as err:
            log.error("%s", err, exc_info=err.exc)
            return
        if action is not None:
            return  # any action on a response means: stop here
        if not self.proxy.on_response(ctx.msg, ctx.source):  # type: ignore[arg-type]
            self._route_reply(ctx.msg, ctx.source)  # type: ignore[arg-type]

    def _route_reply(self, msg: Response, source: Source) -> None:
        """A response no client transaction matched: relay it statelessly if it is ours."""
        if self.pipeline.impls("route_reply") and not self._run_each(
            "route_reply", ReplyContext(msg, source, self)
        ):
            self.counters[DROP_REPLIES] += 1
            return
        # §16.11: forwarded by Via when our Via is on top; anything else is a
        # stray the element drops (§18.1.2).
        if not self.proxy.forward_response_statelessly(msg):
            self.counters[DROP_REPLIES] += 1

    def _run_each(self, stage: str, ctx: Any) -> bool:
        """Run a non-firstresult stage; False when some implementation returned Drop."""
        if not self.pipeline.impls(stage):
            return True
        try:
            results = self.pipeline.each(stage, ctx)
        except HookError as err:
            log.error("%s", err, exc_info=err.exc)
            return True
        keep = True
        for _, result in results:
            if _awaitable(result):
                self.spawn(_swallow(result))
            elif type(result) is Drop:
                keep = False
        return keep

    # ------------------------------------------------------ proxy callbacks
    def run_route_reply(self, response: Response, branch: Any, rc: Any) -> bool:
        """route_reply for a response a client transaction matched; False: dropped."""
        if not self.pipeline.impls("route_reply"):
            return True  # no context to build: the common case
        source = self.proxy.last_source
        return self._run_each(
            "route_reply", ReplyContext(response, source, self, rc.ctx.msg, rc.ctx)  # type: ignore[arg-type]
        )

    def run_route_branch(self, request: Request, branch: Any, ctx: RequestContext) -> bool:
        """route_branch for one outgoing branch; False: the branch is dropped."""
        if not self.pipeline.impls("route_branch"):
            return True
        return self._run_each(
            "route_branch", BranchContext(request, branch.target, branch.index, ctx, self)
        )

    def run_route_local(self, request: Request, destination: tuple[str, str, int]) -> bool:
        """route_local for a request sipline originates; False: a hook vetoed it."""
        if not self.pipeline.impls("route_local"):
            return True
        return self._run_each("route_local", LocalContext(request, destination, self))

    def run_failure(self, rc: Any, best: Response) -> bool:
        """Failure handling (§16.7 step 6 with OpenSIPS ``failure_route``).

        :returns: True when a handler took over (new branches or a local reply).
        """
        ctx: RequestContext = rc.ctx
        fctx = FailureContext(ctx, best, self)
        handler, ctx.failure_handler = ctx.failure_handler, None  # armed for one failure
        index = -1
        try:
            result = handler(fctx) if handler is not None else None
            if result is None:
                index, result = self.pipeline.first_at("route_failure", fctx)
        except HookError as err:
            log.error("%s", err, exc_info=err.exc)
            return False
        except Exception:
            log.exception("failure handler %r failed", handler)
            return False
        if _awaitable(result):
            self.spawn(self._resume_failure(rc, fctx, index, result, best))
            return True
        return self._failure_result(rc, result)

    async def _resume_failure(
        self, rc: Any, fctx: FailureContext, index: int, awaitable: Any, best: Response
    ) -> None:
        try:
            result = await self.pipeline.settle("route_failure", fctx, index, awaitable)
        except HookError as err:
            log.error("%s", err, exc_info=err.exc)
            result = None
        if not self._failure_result(rc, result) and not rc.final_sent and not rc.pending():
            rc.forward_best(best)

    def _failure_result(self, rc: Any, result: Any) -> bool:
        cls = type(result)
        if result is None or cls is Drop:
            return False
        if cls is Relayed:
            return bool(result.ok) or rc.pending()
        if cls is Reply or cls is Redirect:
            ctx = rc.ctx  # answered through the transaction: ctx.response_context is rc
            self._execute(result, ctx.msg, ctx.source, ctx)
            return True
        log.error("a failure handler returned %r, which is not an action", result)
        return False

    async def send_request(
        self, request: Request, destination: str | None = None, *, timeout: float | None = None
    ) -> Response:
        """Originate a non-INVITE request and return its final response.

        See :meth:`sipline.proxy.uac.Uac.send`: the request gets a Via and a client
        transaction, passes ``route_local``, and resolves to the response received or a
        local 408/503. :raises LocalRequestError: when it cannot be sent at all.
        """
        return await self.uac.send(request, destination, timeout=timeout)

    def transport_for(self, proto: str, host: str) -> Transport | None:
        """The listener to send from, for a transport and the destination's family."""
        return self._transport_index.get((proto, ":" in host))

    def sent_by(self, transport: Transport) -> str:
        """Our Via sent-by for ``transport`` (its listen address)."""
        host, port = transport.local[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def record_route_value(self, transport: Transport) -> str:
        """Our Record-Route for ``transport``: loose routing (``lr``), transport named."""
        hostport = self.sent_by(transport)
        param = ";transport=tcp" if transport.proto == "tcp" else ""
        return f"<sip:{hostport}{param};lr>"

    # ---------------------------------------------------------------- sending
    def to_tag(self, msg: Request) -> str:
        """A To-tag that is the same for retransmissions of one request."""
        key = f"{msg.get('call-id')}\0{msg.get('from')}\0{msg.get('via')}"
        return f"{self._tag_prefix}{zlib.crc32(key.encode('latin-1', 'replace')):08x}"

    def reply(
        self,
        msg: Request,
        source: Source,
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        *,
        to_source: bool = False,
    ) -> bool:
        """Answer ``msg`` statelessly (OpenSIPS ``sl_send_reply``).

        ``to_source`` sends to the packet's source address instead of the
        address the Via names (used for requests that failed to parse).
        """
        response = self.local_response(msg, status, reason, headers, body)
        if to_source:
            return source.transport.send(response.to_bytes(), source.remote, source.conn)
        return self.send_response(response.to_bytes(), msg, source)

    def local_response(
        self,
        msg: Request,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        """A response sipline generates for ``msg``: its To-tag and Server header added."""
        return make_response(
            msg,
            status,
            reason,
            to_tag=self.to_tag(msg) if status > 100 else None,
            headers=[*headers, *self.server_header],
            body=body,
        )

    def send_response(self, data: bytes, msg: Request, source: Source) -> bool:
        """Send a response per RFC 3261 §18.2.2 and RFC 3581."""
        return source.transport.send(data, self.response_address(msg, source), source.conn)

    def response_address(self, msg: Request, source: Source) -> tuple[str, int]:
        via = None
        try:
            via = msg.top_via
        except SipParseError:
            pass
        if via is None:
            return source.remote
        return via_destination(via, reliable=source.proto != "udp", source_ip=source.remote[0])


def _contact_headers(contacts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(("Contact", c if "<" in c else f"<{c}>") for c in contacts)


async def _swallow(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("asynchronous route_reply failed")


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["Server", "StartupError", "__version__"]
