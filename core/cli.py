"""The ``sipline`` command line: run, check, plugins, version.

Exit codes: 0 success; 1 invalid configuration (file, key and reason on
stderr); 2 bad command line; 3 the server could not start (for example a port
already in use).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sipline import __version__
from sipline.config import ConfigError
from sipline.plugins import PluginError, PluginLoader

EPILOG = (
    "exit codes: 0 ok, 1 invalid configuration, 2 bad command line, "
    "3 server could not start"
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


def make_parser() -> argparse.ArgumentParser:
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

    sub.add_parser("version", help="print the version", description="Print sipline's version.")
    return parser


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


def cmd_version(args: argparse.Namespace) -> int:
    print(f"sipline {__version__}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins, "version": cmd_version}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
