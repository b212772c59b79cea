"""The plugin contract: every hookspec sipline calls, typed and documented.

Hooks are named after OpenSIPS route types so that operators recognise them.
Every stage hook takes a single context argument (``ctx``); new arguments may be
appended in later versions, never renamed.

Decision stages (:func:`route_request`, :func:`route_failure`, :func:`route_error`,
:func:`message_received`) are *firstresult*: the first implementation that returns
something other than ``None`` decides. An implementation **declines synchronously**
by returning ``None`` from a plain ``def``; to do asynchronous work it returns an
awaitable (for example the coroutine of an inner ``async def``) and the core awaits
it. Never write an ``async def`` hookimpl for a firstresult hook: its coroutine is
never ``None``, so it would always win.

Call order: the routing script first, then plugins in the order of
``[server] plugins`` in the TOML file, then the core's built-in default.

An exception raised by an implementation is logged with the plugin's name and
turns into a ``500 Server Internal Error`` for that request; it never stops the
transport loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from sipline.routing.actions import Action, Drop
    from sipline.routing.context import (
        BranchContext,
        ErrorContext,
        FailureContext,
        LocalContext,
        MessageContext,
        ReplyContext,
        RequestContext,
    )
    from sipline.server import Server

PROJECT = "sipline"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- SIP stages


@hookspec(firstresult=True)
def message_received(ctx: MessageContext) -> Action | Awaitable[Action | None] | None:
    """Inspect every parsed SIP message before any other processing.

    Called for each request and response that parsed successfully, before
    retransmission detection and before :func:`route_request` /
    :func:`route_reply`. Use it for cheap, message-wide policies (flood
    protection, NAT detection, header sanity rules).

    :param ctx: the message (``ctx.msg``, a ``Request`` or ``Response``), where it
        came from (``ctx.source``) and the server (``ctx.server``).
    :returns: ``None`` to let processing continue; an action (``Drop``, or
        ``Reply`` for requests) to stop it; or an awaitable resolving to one of
        these (resolving to ``None``, processing continues with the next
        implementation).

    Stops at first non-None result. Must stay cheap: it runs for every message.
    """


@hookspec(firstresult=True)
def route_request(ctx: RequestContext) -> Action | Awaitable[Action | None] | None:
    """Decide what to do with a request (OpenSIPS ``route``).

    Called once per new request that is not a retransmission, after the core's
    RFC 3261 sanity checks (version, URI scheme, Max-Forwards,
    Proxy-Require). The routing script runs first, then plugins in
    ``[server] plugins`` order, then the core's default script.

    :param ctx: the request context: ``ctx.msg`` (the ``Request``),
        ``ctx.source``, ``ctx.server``, message flags (``ctx.flags``) and
        per-request variables (``ctx.vars``); helpers such as ``ctx.reply()``,
        ``ctx.redirect()``, ``ctx.drop()`` and ``ctx.is_myself()`` build actions.
    :returns: ``None`` to decline (let the next implementation decide), an
        action (``Reply``, ``Redirect``, ``Drop``...), or an awaitable that
        resolves to an action or to ``None``; an awaitable resolving to
        ``None`` declines late, and the pipeline resumes with the next
        implementation.

    Stops at first non-None result. Decline synchronously; return an awaitable
    only when the request is yours.
    """


@hookspec
def route_reply(ctx: ReplyContext) -> Drop | Awaitable[Drop | None] | None:
    """See every response received (OpenSIPS ``onreply_route``).

    Called for each response that parsed successfully and was not dropped by
    :func:`message_received`, before it is matched to a client transaction
    and relayed upstream. All implementations run, in pipeline order.

    :param ctx: the reply context: ``ctx.msg`` (the ``Response``),
        ``ctx.source``, ``ctx.server``, and ``ctx.request`` (the request it
        answers, when a transaction matched, else ``None``).
    :returns: ``None`` to let the reply continue, ``Drop`` to discard it (only
        provisional replies should be dropped), or an awaitable of either.

    All results are collected; the reply is dropped if any is ``Drop``.
    """


@hookspec
def route_branch(ctx: BranchContext) -> Drop | Awaitable[Drop | None] | None:
    """Adjust one outgoing branch before it is sent (OpenSIPS ``branch_route``).

    Called once per branch the proxy core creates (parallel forking calls it
    for each target; serial forking for each new attempt), after Via and
    Record-Route were added and before the request is sent. All
    implementations run, in pipeline order.

    :param ctx: the branch context: ``ctx.msg`` (the outgoing ``Request``
        copy, which may be modified), ``ctx.target`` (the URI the branch goes
        to), ``ctx.branch_index``, ``ctx.request`` (the original request
        context) and ``ctx.server``.
    :returns: ``None`` to send the branch, ``Drop`` to cancel this branch only,
        or an awaitable of either.

    All results are collected; the branch is dropped if any is ``Drop``.
    """


@hookspec(firstresult=True)
def route_failure(ctx: FailureContext) -> Action | Awaitable[Action | None] | None:
    """Decide what to do when every branch of a request failed (``failure_route``).

    Called when the response context of a forwarded request ends without a
    2xx or 6xx, that is, when its best response is 3xx, 4xx or 5xx,
    including local 408 on timeout and 503 on transport errors. This is where
    serial forking and gateway failover happen.

    :param ctx: the failure context: ``ctx.request`` (the original request
        context), ``ctx.response`` (the best final ``Response`` so far),
        ``ctx.server``.
    :returns: ``None`` to decline (the best response is relayed upstream), a
        new action (typically another relay to the next target, or a
        ``Reply``), or an awaitable of one.

    Stops at first non-None result.
    """


@hookspec
def route_local(ctx: LocalContext) -> Drop | Awaitable[Drop | None] | None:
    """See a request that sipline itself originates (OpenSIPS ``local_route``).

    Called before the server sends a request it generated on its own (an
    OPTIONS probe, a BYE ending a dialog on timeout, a NOTIFY, a CANCEL), so
    that plugins can add headers or veto it.

    :param ctx: the local context: ``ctx.msg`` (the outgoing ``Request``,
        modifiable), ``ctx.destination`` (where it goes) and ``ctx.server``.
    :returns: ``None`` to send it, ``Drop`` to suppress it, or an awaitable of
        either.

    All results are collected; the request is not sent if any is ``Drop``.
    """


@hookspec(firstresult=True)
def route_error(ctx: ErrorContext) -> Action | Awaitable[Action | None] | None:
    """Decide what to do with a message that failed to parse (``error_route``).

    Called when bytes received from the network are not a valid SIP message
    (RFC 3261 §25 grammar or the checks of RFC 4475). The core's default
    answers a broken request with the error's status (400 with a reason
    phrase naming the defect, 505 for a bad version, 513 too large) and
    silently drops a broken response.

    :param ctx: the error context: ``ctx.error`` (a ``SipParseError`` with
        ``status``, ``reason`` and, when the start line and headers could be
        split, the partially parsed ``message``), ``ctx.data`` (the raw
        bytes), ``ctx.source`` and ``ctx.server``.
    :returns: ``None`` to leave it to the next implementation (and finally
        the core default), ``Reply`` to answer differently, ``Drop`` to stay
        silent, or an awaitable of one.

    Stops at first non-None result. A ``Reply`` is only possible when the
    broken message was a request whose Via could be read.
    """


# ------------------------------------------------------------------ lifecycle


@hookspec
def startup(server: Server) -> Awaitable[None] | None:
    """Prepare the plugin once the server is configured, before it listens.

    Called once per worker process, after configuration was validated and
    plugins were registered, before the first message is read. Read your
    configuration with ``server.plugin_config("<name>")``, open databases,
    load routing data into memory, start background tasks.

    :param server: the running server.
    :returns: ``None``, or an awaitable the core awaits before it starts
        listening.

    All implementations run, in pipeline order; an exception aborts startup
    with the plugin's name in the error.
    """


@hookspec
def shutdown(server: Server) -> Awaitable[None] | None:
    """Release resources when the server stops.

    Called once per worker on SIGINT/SIGTERM, after the listeners stopped
    reading. Flush write-back caches, close connections, cancel tasks.

    :param server: the stopping server.
    :returns: ``None`` or an awaitable the core awaits (bounded by the
        shutdown timeout).

    All implementations run, in reverse pipeline order; an exception is
    logged and the remaining implementations still run.
    """


@hookspec
def timer(server: Server, now: float) -> Awaitable[None] | None:
    """Do periodic housekeeping (OpenSIPS timer routes).

    Called every ``[server] timer_interval`` seconds (default 1) in every
    worker: expire bindings, flush write-back caches, send probes.

    :param server: the running server.
    :param now: the event loop's monotonic time (``loop.time()``) of this
        tick, so that tests can reason about expiry without wall clocks.
    :returns: ``None``, or an awaitable that runs as a background task (a
        slow timer never delays SIP processing; a tick is skipped while the
        previous awaitable of the same plugin is still running).

    All implementations run.
    """


# ------------------------------------------------------------------ registries


@hookspec
def register_mi_commands(register: Callable[..., None]) -> None:
    """Register management-interface (JSON-RPC) commands.

    Called once at startup. Call ``register(name, function, *, params=None,
    help="")`` for each command; ``name`` is ``"<plugin>:<command>"`` and an
    OpenSIPS classic alias may be given with ``alias="lb_reload"``. The
    function may be a plain function or a coroutine function.

    :param register: the registration callback.
    :returns: nothing; use the callback.
    """


@hookspec
def register_statistics(register: Callable[..., Any]) -> None:
    """Declare the plugin's statistics.

    Called once at startup. Call ``register("group:name", kind="counter" |
    "gauge", help="...")`` for each statistic, or with ``function=`` for a
    value computed from the plugin's own state. Names follow OpenSIPS
    (``registrar:accepted_regs``). Without ``function=``, ``register`` returns
    the handle to count with (``handle.inc()``; a gauge's ``set()``), exact
    across workers (see docs/mi.md).

    :param register: the registration callback.
    :returns: nothing; use the callback.
    """


@hookspec
def register_script_api(register: Callable[[str, Callable[[Any], Any]], None]) -> None:
    """Expose an API to routing scripts as an attribute of ``ctx``.

    Called once at startup. ``register("registrar", factory)`` makes
    ``ctx.registrar`` available in every route stage; ``factory(ctx)`` is
    called on first access per context and must be cheap (return a small
    bound object or a shared one). The object is dropped when the request is
    finished, so one that keeps its ``ctx`` makes no lasting reference cycle.

    :param register: the registration callback taking the attribute name and
        the factory.
    :returns: nothing; use the callback. Registering a name twice is an
        error that names both plugins.
    """


@hookspec
def register_cli_commands(register: Callable[..., None]) -> None:
    """Add subcommands to the ``sipline`` command line (``sipline user add ...``).

    Called when the command line is built, for every *installed* plugin whether
    or not the configuration enables it (a command such as ``sipline user``
    must work before the server ever ran). Call ``register(name, handler, *,
    help, configure=None)`` for each command: ``configure(parser)`` adds the
    command's own arguments to its :class:`argparse.ArgumentParser` (the core
    adds ``-c/--config`` itself); ``handler(args, config)`` receives the parsed
    arguments and the validated :class:`~sipline.config.Config` and returns
    the process exit code. A name the core or another plugin already uses is
    an error that names both. A plugin whose module fails to load is skipped
    with a warning, so one broken plugin never breaks ``sipline --help``.

    :param register: the registration callback.
    :returns: nothing; use the callback.
    """


@hookspec
def config_model() -> type[BaseModel] | None:
    """Declare the typed model of the plugin's TOML section.

    The section is ``[plugins.<name>]``. The model is a pydantic model; set
    ``model_config = ConfigDict(extra="forbid")`` so that unknown keys are
    rejected (``sipline check`` reports them with file and key). The
    validated instance is available as ``server.plugin_config("<name>")``.

    :returns: the model class, or ``None`` if the plugin takes no settings
        (a section for it is then an error).
    """


@hookspec
def migrations_location() -> str | None:
    """Point Alembic at the plugin's migration revisions.

    :returns: the path of the folder holding the plugin's Alembic revisions
        (its first revision has ``branch_labels=("<name>",)`` and depends on
        the core root), or ``None`` if the plugin has no database tables.
    """
