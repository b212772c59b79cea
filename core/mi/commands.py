"""The core's MI commands (OpenSIPS names): which, ps, uptime, version, statistics,
log_level, reload_routes, mem. There is no shutdown command: stop the server with
SIGTERM (or SIGINT), which every process manager can send."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import signal
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from sipline import __version__
from sipline.config import LOG_LEVELS
from sipline.stats import RCV_REPLIES, RCV_REQUESTS, StatisticsError, rss_bytes

from .jsonrpc import INVALID_PARAMS, Command, CommandTable, MIError, schema_for

if TYPE_CHECKING:
    from sipline.server import Server

log = logging.getLogger("sipline.mi")

_NAMES = (list, str)


def _patterns(statistics: list[Any] | str | None) -> list[str]:
    if statistics is None:
        return ["all"]
    items = [statistics] if isinstance(statistics, str) else statistics
    if not items:
        return ["all"]
    if not all(isinstance(s, str) for s in items):
        raise MIError("statistics must be names ('group:name', 'group:' or 'all')",
                      INVALID_PARAMS)
    return items


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _plugin_version(name: str) -> str:
    for dist in (f"sipline-{name.replace('_', '-')}", f"sipline_{name}"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


class CoreCommands:
    """The core's commands, bound to one server (the worker that serves MI)."""

    def __init__(self, server: Server, table: CommandTable) -> None:
        self.server = server
        self.table = table

    def commands(self) -> list[Command]:
        def cmd(name: str, alias: str, function: Callable[..., Any], help: str,
                params: Any = None) -> Command:
            return Command(name, function, schema_for(function, params), help, alias, "core")

        return [
            cmd("core:which", "which", self.which,
                "list the commands (or describe one) with their parameters",
                {"command": str}),
            cmd("core:ps", "ps", self.ps, "the server's processes: pid, role, uptime", {}),
            cmd("core:uptime", "uptime", self.uptime, "when the server started and for how long",
                {}),
            cmd("core:version", "version", self.version,
                "sipline's version, Python's, and the enabled plugins'", {}),
            cmd("statistics:get", "get_statistics", self.get_statistics,
                "values of statistics: names, 'group:' for a group, 'all'",
                {"statistics": _NAMES}),
            cmd("statistics:reset", "reset_statistics", self.reset_statistics,
                "set counters back to zero (names, 'group:', 'all'); gauges stay",
                {"statistics": _NAMES}),
            cmd("statistics:list", "list_statistics", self.list_statistics,
                "every statistic (or those named) with its kind and help",
                {"statistics": _NAMES}),
            cmd("core:log_level", "log_level", self.log_level,
                "show the log levels, or set one (for a plugin with logger=<plugin>)",
                {"level": str, "logger": str}),
            cmd("core:reload_routes", "reload_routes", self.reload_routes,
                "reload the routing script; one that fails to load is refused and the "
                "running one stays", {}),
            cmd("core:mem", "mem", self.mem,
                "memory (RSS), transactions, dialogs and connections in use", {}),
        ]

    # ------------------------------------------------------------------ commands
    def which(self, command: str | None = None) -> Any:
        if command is not None:
            found = self.table.resolve(command)
            if found is None:
                raise MIError(f"no MI command {command!r}", INVALID_PARAMS)
            return found.describe()
        return [
            {"name": c.name, "alias": c.alias or "", "params": c.usage(), "help": c.help}
            for c in sorted(self.table, key=lambda c: c.name)
        ]

    def ps(self) -> dict[str, list[dict[str, Any]]]:
        server = self.server
        shared = server.stats.shared
        now = datetime.datetime.now().timestamp()
        rows: list[dict[str, Any]] = []
        listeners = ", ".join(f"{t.proto}:{_hostport(t.local)}" for t in server.transports)
        if shared.workers == 1:
            rows.append({"ID": 0, "PID": os.getpid(), "Type": f"SIP worker, MI ({listeners})",
                         "Uptime": round(now - shared.processes()[0]["started"], 1),
                         "Messages": server.counters[RCV_REQUESTS] + server.counters[RCV_REPLIES]})
            return {"Processes": rows}
        supervisor = shared.supervisor_pid
        if supervisor:
            rows.append({"ID": 0, "PID": supervisor, "Type": "supervisor (forks the workers)",
                         "Uptime": "", "Messages": ""})
        for proc in shared.processes():
            role = f"SIP worker {proc['worker']}"
            if proc["mi"]:
                role += ", MI"
            if not proc["running"]:
                role += " (stopped)" if proc["pid"] else " (starting)"
            uptime = round(now - proc["started"], 1) if proc["started"] else ""
            row = shared.row(proc["worker"])
            rows.append({"ID": proc["worker"] + 1, "PID": proc["pid"], "Type": role,
                         "Uptime": uptime, "Messages": row[RCV_REQUESTS] + row[RCV_REPLIES]})
        return {"Processes": rows}

    def uptime(self) -> dict[str, Any]:
        started = self.server.stats.shared.processes()[self.server.worker]["started"]
        now = datetime.datetime.now().timestamp()
        return {"now": _iso(now), "up_since": _iso(started), "uptime": round(now - started, 3)}

    def version(self) -> dict[str, Any]:
        plugins = {name: _plugin_version(name) for name in self.server.config.server.plugins}
        return {
            "server": f"sipline {__version__}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "plugins": ", ".join(f"{n} {v}" for n, v in plugins.items()) or "none",
        }

    def get_statistics(self, statistics: list[str] | str) -> dict[str, int | float]:
        try:
            return self.server.stats.get(_patterns(statistics))
        except StatisticsError as exc:
            raise MIError(str(exc), INVALID_PARAMS) from None

    def reset_statistics(self, statistics: list[str] | str) -> dict[str, Any]:
        try:
            names = self.server.stats.reset(_patterns(statistics))
        except StatisticsError as exc:
            raise MIError(str(exc), INVALID_PARAMS) from None
        return {"reset": len(names), "statistics": names}

    def list_statistics(self, statistics: list[str] | str | None = None) -> list[dict[str, Any]]:
        try:
            chosen = self.server.stats.select(_patterns(statistics))
        except StatisticsError as exc:
            raise MIError(str(exc), INVALID_PARAMS) from None
        return [{"name": s.name, "kind": s.kind, "plugin": s.plugin, "help": s.help}
                for s in chosen]

    def log_level(self, level: str | None = None, logger: str | None = None) -> Any:
        if logger is None:
            names = ["sipline"]
        elif logger == "sipline" or logger.startswith("sipline."):
            names = [logger]
        else:  # a plugin's name: its loggers, whichever of the two usual names it took
            known = logging.root.manager.loggerDict
            names = [n for n in (f"sipline.{logger}", f"sipline.plugin.{logger}") if n in known]
            names = names or [f"sipline.{logger}"]
        if level is None:
            if logger is not None:
                return [_level_row(n) for n in names]
            names = ["sipline", *sorted(
                n for n in logging.root.manager.loggerDict if n.startswith("sipline.")
            )]
            return [_level_row(n) for n in names]
        text = level.lower()
        if text not in LOG_LEVELS:
            raise MIError(f"level must be one of {', '.join(LOG_LEVELS)}, got {level!r}",
                          INVALID_PARAMS)
        rows = []
        for name in names:
            target = logging.getLogger(name)
            previous = logging.getLevelName(target.getEffectiveLevel()).lower()
            target.setLevel(text.upper())
            log.warning("MI log_level: %s set to %s (was %s)", name, text, previous)
            rows.append({"logger": name, "level": text, "previous": previous})
        return rows

    def reload_routes(self) -> dict[str, Any]:
        from sipline.plugins import PluginError
        from sipline.routing.script import ScriptError

        server = self.server
        try:
            server.reload_script()
        except (ScriptError, PluginError) as exc:
            raise MIError(
                f"routing script not reloaded, the previous one stays active: {exc}"
            ) from None
        signalled = []
        shared = server.stats.shared
        if shared.workers > 1:  # the other workers reload on SIGHUP (see runner.serve)
            for proc in shared.processes():
                pid = proc["pid"]
                if proc["worker"] != server.worker and proc["running"] and pid:
                    try:
                        os.kill(pid, signal.SIGHUP)
                        signalled.append(pid)
                    except ProcessLookupError:
                        pass
        return {"reloaded": str(server.config.server.script), "workers_signalled": signalled}

    def mem(self) -> dict[str, Any]:
        server = self.server
        stats = server.stats
        wanted = ["core:rss_bytes", "tm:inuse_transactions", "core:tcp_connections"]
        dialogs = "dialog:active_dialogs"
        if dialogs in stats:
            wanted.append(dialogs)
        values = stats.get(wanted)
        layer = server.proxy.layer
        return {
            "workers": stats.shared.workers,
            "rss_bytes": values["core:rss_bytes"],
            "rss_bytes_this_process": rss_bytes(),
            "transactions": values["tm:inuse_transactions"],
            "server_transactions_this_process": layer.server_count if layer else 0,
            "client_transactions_this_process": layer.client_count if layer else 0,
            "dialogs": values.get(dialogs),
            "tcp_connections": values["core:tcp_connections"],
        }


def _level_row(name: str) -> dict[str, str]:
    logger = logging.getLogger(name)
    return {
        "logger": name,
        "level": logging.getLevelName(logger.getEffectiveLevel()).lower(),
        "set": logging.getLevelName(logger.level).lower() if logger.level else "(inherited)",
    }


def _hostport(addr: tuple[str, int]) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_table(server: Server) -> CommandTable:
    """The core's commands, then every plugin's (``server.mi_commands``).

    :raises ValueError: a plugin's command or alias clashes with another.
    """
    table = CommandTable()
    for command in CoreCommands(server, table).commands():
        table.add(command)
    for name, meta in server.mi_commands.items():
        function = meta["function"]
        table.add(Command(
            name=name,
            function=function,
            params=schema_for(function, meta.get("params")),
            help=str(meta.get("help", "")),
            alias=meta.get("alias"),
            plugin=str(meta.get("plugin", "?")),
        ))
    return table


__all__ = ["CoreCommands", "build_table"]
