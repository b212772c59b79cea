"""Building a server from configuration and running it: event loop, signals, workers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pluggy

from sipline.config import Config, ConfigError, load_config
from sipline.gcpolicy import GC_THRESHOLDS, FullCollections
from sipline.plugins import PluginError, PluginLoader, build_plugin_manager
from sipline.routing.default import CoreDefaults
from sipline.routing.script import ScriptError, load_script
from sipline.server import Server, StartupError
from sipline.stats import SharedSlots

log = logging.getLogger("sipline")

#: Exit codes scripts can rely on (also documented in ``sipline --help``).
EXIT_OK = 0
EXIT_CONFIG = 1  # invalid configuration, unknown plugin, broken routing script
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_STARTUP = 3  # valid configuration but the server could not start (port in use...)
EXIT_DATABASE = 4  # database unreachable, a migration failed, or the schema is behind


def load(path: Path | None, loader: PluginLoader | None = None) -> tuple[Config, PluginLoader]:
    """Load and validate the configuration, with every installed plugin's model."""
    loader = loader or PluginLoader()

    def model_for(name: str) -> Any:
        return loader.config_model(name)

    try:
        config = load_config(path, installed_plugins=loader.installed, model_for=model_for)
    except PluginError as exc:
        raise ConfigError([f"{path or '<built-in default>'}: {exc}"]) from exc
    return config, loader


def build(config: Config, loader: PluginLoader) -> pluggy.PluginManager:
    """The plugin manager for ``config``: script, enabled plugins, core defaults."""
    where = config.source or "<built-in default>"
    try:
        enabled = [(name, loader.load(name)) for name in config.server.plugins]
        script = load_script(config.server.script) if config.server.script else None
        return build_plugin_manager(enabled, defaults=CoreDefaults(), script=script)
    except (PluginError, ScriptError) as exc:
        raise ConfigError([f"{where}: {exc}"]) from exc


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def serve(
    config: Config,
    pm: pluggy.PluginManager,
    *,
    reuse_port: bool = False,
    worker: int = 0,
    shared: SharedSlots | None = None,
    mi: bool = True,
) -> int:
    """Run one worker until SIGINT/SIGTERM (``mi``: it also serves the MI listeners)."""
    server = Server(config, pm, reuse_port=reuse_port, worker=worker, shared=shared, mi=mi)
    loop = asyncio.get_running_loop()
    stop_asked = False

    def stop() -> None:
        nonlocal stop_asked
        stop_asked = True
        server.request_stop()

    # Before start(): a SIGTERM while the listeners open must not be lost.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await server.start()
    except StartupError as exc:
        log.error("%s", exc)
        await server.stop()
        return EXIT_STARTUP
    if stop_asked:
        server.request_stop()
    loop.add_signal_handler(signal.SIGHUP, _reload, server)
    # Everything loaded so far (modules, plugins, config) lives for the whole
    # run: keep it out of the collector's way. The rest: sipline.gcpolicy.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    server.spawn(_full_collections(server, FullCollections()))
    log.info("sipline ready (pid %d)", os.getpid())
    await server.wait_stopped()
    log.info("shutting down")
    await server.stop()
    return EXIT_OK


async def _full_collections(server: Server, schedule: FullCollections, tick: float = 5.0) -> None:
    """Run the old generation's collections on ``schedule`` (see sipline.gcpolicy)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(tick)
        layer = server.proxy.layer
        live = len(layer) if layer is not None else 0
        if gc.isenabled() and schedule.due(loop.time(), live):
            started = loop.time()
            found = gc.collect()
            log.debug("full collection: %d unreachable objects, %.1f ms",
                      found, (loop.time() - started) * 1000)


def _reload(server: Server) -> None:
    try:
        server.reload_script()
    except (ScriptError, PluginError) as exc:
        log.error("routing script not reloaded, the previous one stays active: %s", exc)


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def prepare_database(config: Config) -> int:
    """The schema check before serving: the enabled plugins' tables must be current.

    Upgrades them when ``[database] auto_upgrade`` allows it. Costs nothing when
    no enabled plugin has tables; runs once, before any worker is forked.
    """
    from sipline.db import DatabaseError, ensure_schema, migration_plugins

    if not set(config.server.plugins) & migration_plugins():
        return EXIT_OK
    try:
        steps = ensure_schema(config)
    except DatabaseError as exc:
        log.error("%s", exc)
        return EXIT_DATABASE
    for step in steps:
        log.info("database auto_upgrade: %s", step)
    return EXIT_OK


def run(config: Config, pm: pluggy.PluginManager) -> int:
    """Run the server: one process, or ``workers`` forked processes on SO_REUSEPORT sockets."""
    code = prepare_database(config)
    if code != EXIT_OK:
        return code
    workers = config.server.workers
    if workers == 1:
        return _run_loop(serve(config, pm))
    if any(listen.port == 0 for listen in config.server.listen):
        log.error("[server] workers > 1 needs fixed ports (port 0 would give each worker its own)")
        return EXIT_CONFIG
    children: dict[int, int] = {}
    # Statistics slots every worker writes its own row of (exact sums, no locks);
    # worker 0 alone serves MI and reads them all.
    shared = SharedSlots(workers)
    shared.supervisor_pid = os.getpid()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            os._exit(_run_loop(serve(config, pm, reuse_port=True, worker=index, shared=shared,
                                     mi=index == 0)))
        children[pid] = index
    log.info("started %d workers: %s", workers, ", ".join(map(str, children)))

    def forward(signum: int, _frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)  # script reload in every worker
    status = EXIT_OK
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != EXIT_OK:
            status = code if code > 0 else EXIT_STARTUP
            forward(signal.SIGTERM, None)  # one worker failed: stop the rest
    return status


__all__ = [
    "EXIT_CONFIG", "EXIT_DATABASE", "EXIT_OK", "EXIT_STARTUP", "EXIT_USAGE",
    "ConfigError", "build", "load", "prepare_database", "run",
]
