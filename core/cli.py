"""The ``sipline`` command line: run, check, plugins, db, version, and plugins' commands.

Exit codes: 0 success; 1 invalid configuration (file, key and reason on
stderr); 2 bad command line; 3 the server could not start (for example a port
already in use); 4 database error: unreachable, a migration failed, or the
schema is behind and ``sipline run`` may not upgrade it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sipline import __version__
from sipline.config import Config, ConfigError
from sipline.mi.client import add_parser as add_mi_parser
from sipline.plugins import PluginError, PluginLoader, new_plugin_manager, register

EPILOG = (
    "exit codes: 0 ok, 1 invalid configuration, 2 bad command line, "
    "3 server could not start, 4 database error (unreachable, migration failed, "
    "schema behind)"
)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        type=Path,
        help="TOML configuration file (default: the built-in configuration: "
        "loopback port 5060, SQLite in the data dir)",
    )


@dataclass(frozen=True)
class PluginCommand:
    """A subcommand a plugin adds through ``register_cli_commands``."""

    name: str
    plugin: str
    handler: Callable[[argparse.Namespace, Config], int]
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | None = None


def plugin_commands(loader: PluginLoader, reserved: set[str]) -> dict[str, PluginCommand]:
    """Every installed plugin's commands; plugins that fail to load are skipped with a warning."""
    pm = new_plugin_manager()
    for name in sorted(loader.installed):
        try:
            register(pm, loader.load(name), name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            print(f"warning: plugin {name!r} skipped: {exc}", file=sys.stderr)
    found: dict[str, PluginCommand] = {}
    for impl in pm.hook.register_cli_commands.get_hookimpls():
        plugin = impl.plugin_name

        def add(name: str, handler: Any, *, help: str, configure: Any = None,
                _plugin: str = plugin) -> None:
            if name in reserved:
                raise PluginError(f"plugin {_plugin!r}: command {name!r} is a core command")
            if name in found:
                raise PluginError(f"command {name!r} is registered by plugins "
                                  f"{found[name].plugin!r} and {_plugin!r}")
            found[name] = PluginCommand(name, _plugin, handler, help, configure)

        impl.function(register=add)
    return found


def make_parser(extra: dict[str, PluginCommand] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipline",
        description="sipline: a SIP registrar, proxy and application server built from plugins.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"sipline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run the server", description="Run the SIP server until "
                       "SIGINT or SIGTERM.", epilog=EPILOG)
    _config_arg(p)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"],
                   help="override [server] log_level")

    p = sub.add_parser("check", help="validate the configuration without starting",
                       description="Validate the configuration, the enabled plugins and the "
                       "routing script without opening any socket.", epilog=EPILOG)
    _config_arg(p)

    p = sub.add_parser("plugins", help="list installed plugins",
                       description="List every installed plugin (entry point group "
                       "'sipline') with its version and distribution, and whether the "
                       "configuration enables it.", epilog=EPILOG)
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    _db_parser(sub)
    add_mi_parser(sub, _config_arg)
    sub.add_parser("version", help="print the version", description="Print sipline's version.")
    for command in (extra or {}).values():
        p = sub.add_parser(command.name, help=command.help,
                           description=f"{command.help} (plugin {command.plugin}).",
                           epilog=EPILOG)
        _config_arg(p)
        if command.configure is not None:
            command.configure(p)
    return parser


def _db_parser(sub: Any) -> None:
    db = sub.add_parser(
        "db", help="migrate the database schema (Alembic)",
        description="Show and migrate the schema of [database] url: the core's and every "
        "installed plugin's Alembic branch (the branch is named after the plugin).",
        epilog=EPILOG,
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("upgrade", help="apply migrations (default: every branch to its head)",
                           description="Apply migrations up to REV.", epilog=EPILOG)
    _config_arg(p)
    p.add_argument("revision", nargs="?", default="heads", metavar="REV",
                   help="target: 'heads' (default), a branch head such as 'registrar@head', "
                   "or a revision id")
    p = actions.add_parser("downgrade", help="revert migrations down to REV",
                           description="Revert migrations down to REV; 'registrar@base' "
                           "drops the registrar's tables.", epilog=EPILOG)
    _config_arg(p)
    p.add_argument("revision", metavar="REV",
                   help="target: '<branch>@base', a revision id, or 'base' (everything)")
    p = actions.add_parser("current", help="show each branch's revision in the database",
                           description="Show, per branch, the revision the database is at "
                           "and whether it is the installed head.", epilog=EPILOG)
    _config_arg(p)
    p = actions.add_parser("history", help="list every installed revision",
                           description="List every installed revision, oldest first, and "
                           "whether the database has it.", epilog=EPILOG)
    _config_arg(p)


def _fail_config(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    from sipline.runner import build, load

    try:
        config, loader = load(args.config)
        build(config, loader)
    except ConfigError as exc:
        return _fail_config(exc)
    where = config.source or "built-in default configuration"
    listeners = ", ".join(str(x) for x in config.server.listen)
    plugins = ", ".join(config.server.plugins) or "none"
    print(f"{where}: OK (listen {listeners}; plugins: {plugins})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from sipline.runner import build, load, run, setup_logging

    try:
        config, loader = load(args.config)
        pm = build(config, loader)
    except ConfigError as exc:
        return _fail_config(exc)
    setup_logging(args.log_level or config.server.log_level)
    return run(config, pm)


def cmd_plugins(args: argparse.Namespace) -> int:
    try:
        loader = PluginLoader()
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    enabled: list[str] = []
    if args.config is not None:
        from sipline.runner import load

        try:
            config, _ = load(args.config, loader)
        except ConfigError as exc:
            return _fail_config(exc)
        enabled = config.server.plugins
    rows = [
        {
            "name": info.name,
            "version": info.version,
            "dist": info.dist,
            "entry_point": info.value,
            "enabled": info.name in enabled,
        }
        for info in sorted(loader.installed.values(), key=lambda i: i.name)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins installed (pip install sipline-<name> to add one)")
        return 0
    head = ("NAME", "VERSION", "DISTRIBUTION", "ENABLED", "ENTRY POINT")
    table = [head] + [
        (r["name"], r["version"], r["dist"], "yes" if r["enabled"] else "no", r["entry_point"])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _print_status(status: Any) -> None:
    width = max([len(b.name) for b in status.branches] + [6])
    rev_width = max([len(b.current or "-") for b in status.branches] + [8])
    for b in status.branches:
        state = "head" if b.up_to_date else f"behind (head {b.head})"
        print(f"  {b.name.ljust(width)}  {(b.current or '-').ljust(rev_width)}  {state}")
    for rev in status.unknown:
        print(f"  {rev}: recorded in the database but not installed (a removed plugin?)")


def cmd_db(args: argparse.Namespace) -> int:
    from sipline import db
    from sipline.runner import EXIT_DATABASE, load

    try:
        config, _ = load(args.config)
    except ConfigError as exc:
        return _fail_config(exc)
    url = config.database_url
    try:
        if args.db_command == "history":
            revisions, error = db.history(url)
            width = max([len(r.revision) for r in revisions] + [8])
            branch_width = max([len(r.branch) for r in revisions] + [6])
            for r in revisions:
                state = {True: "applied", False: "pending", None: "?"}[r.applied]
                print(f"{r.revision.ljust(width)}  {r.branch.ljust(branch_width)}  "
                      f"{state.ljust(7)}  {r.doc}".rstrip())
            if error is not None:
                print(f"warning: applied revisions unknown: {error}", file=sys.stderr)
            return 0
        if args.db_command in ("upgrade", "downgrade"):
            migrate = db.upgrade if args.db_command == "upgrade" else db.downgrade
            steps = migrate(url, args.revision, lambda line: print(line, flush=True))
            status = db.schema_status(url)
            print(f"{status.url}: {'no change' if not steps else f'{len(steps)} step(s) applied'}")
        else:
            status = db.schema_status(url)
            print(f"{status.url}:")
        _print_status(status)
    except db.DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    return 0


def cmd_mi(args: argparse.Namespace) -> int:
    from sipline.mi.client import run_cli

    return run_cli(args)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"sipline {__version__}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "plugins": cmd_plugins,
    "db": cmd_db,
    "mi": cmd_mi,
    "version": cmd_version,
}


def run_plugin_command(command: PluginCommand, args: argparse.Namespace,
                       loader: PluginLoader) -> int:
    from sipline.runner import load

    try:
        config, _ = load(args.config, loader)
    except ConfigError as exc:
        return _fail_config(exc)
    return command.handler(args, config)


def main(argv: list[str] | None = None, loader: PluginLoader | None = None) -> int:
    try:
        loader = loader or PluginLoader()
        extra = plugin_commands(loader, set(COMMANDS))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args = make_parser(extra).parse_args(argv)
    if args.command in extra:
        return run_plugin_command(extra[args.command], args, loader)
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
