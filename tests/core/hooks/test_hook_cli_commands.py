"""register_cli_commands: plugins add subcommands to ``sipline``."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from sipline import cli
from sipline.hooks import hookimpl
from sipline.plugins import PluginInfo, PluginLoader


class BlockPlugin:
    """Adds ``sipline block ADDRESS [--reason TEXT]``."""

    def __init__(self, name: str = "block") -> None:
        self.name = name
        self.calls: list[tuple[str, str, str]] = []

    @hookimpl
    def register_cli_commands(self, register):
        def configure(parser):
            parser.add_argument("address")
            parser.add_argument("--reason", default="none")

        def handler(args, config):
            self.calls.append((args.address, args.reason, str(config.server.listen[0])))
            return 7

        register(self.name, handler, help="refuse an address", configure=configure)


BLOCK = BlockPlugin()
CLASH = BlockPlugin()
CORE_CLASH = BlockPlugin("run")


class Broken:
    """An entry point whose import fails."""


def loader_for(**plugins: str) -> PluginLoader:
    """A loader whose installed plugins are attributes of this module."""
    installed = {
        name: PluginInfo(name, f"sipline-{name}", "1.0", f"{__name__}:{attr}",
                         EntryPoint(name, f"{__name__}:{attr}", "sipline"))
        for name, attr in plugins.items()
    }
    return PluginLoader(installed)


def test_hook_register_cli_commands_adds_a_subcommand(tmp_path, capsys):
    BLOCK.calls.clear()
    conf = tmp_path / "s.toml"
    conf.write_text('[server]\nlisten = ["udp:127.0.0.1:5999"]\n')
    code = cli.main(["block", "-c", str(conf), "192.0.2.9", "--reason", "spam"],
                    loader=loader_for(block="BLOCK"))
    assert code == 7
    assert BLOCK.calls == [("192.0.2.9", "spam", "udp:127.0.0.1:5999")]


def test_hook_register_cli_commands_listed_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"], loader=loader_for(block="BLOCK"))
    assert exc.value.code == 0
    assert "refuse an address" in capsys.readouterr().out


def test_hook_register_cli_commands_bad_config_exits_1_before_handler(tmp_path, capsys):
    BLOCK.calls.clear()
    conf = tmp_path / "s.toml"
    conf.write_text("[server]\nnot_a_key = 1\n")
    assert cli.main(["block", "-c", str(conf), "x"], loader=loader_for(block="BLOCK")) == 1
    assert "not_a_key" in capsys.readouterr().err
    assert BLOCK.calls == []


def test_hook_register_cli_commands_duplicate_names_both_plugins(capsys):
    assert cli.main(["version"], loader=loader_for(a="BLOCK", b="CLASH")) == 1
    err = capsys.readouterr().err
    assert "'block'" in err and "'a'" in err and "'b'" in err


def test_hook_register_cli_commands_core_name_is_refused(capsys):
    assert cli.main(["version"], loader=loader_for(x="CORE_CLASH")) == 1
    assert "core command" in capsys.readouterr().err


def test_hook_register_cli_commands_broken_plugin_is_skipped(capsys):
    code = cli.main(["version"], loader=loader_for(block="BLOCK", gone="NO_SUCH_ATTRIBUTE"))
    captured = capsys.readouterr()
    assert code == 0 and "sipline" in captured.out
    assert "plugin 'gone' skipped" in captured.err
