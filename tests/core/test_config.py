"""TOML configuration: defaults, typed sections, path resolution, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from sipline.config import (
    ConfigError,
    ListenAddress,
    build_config,
    default_config,
    load_config,
    parse_listen,
)


class RegistrarModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_contacts: int = 10
    db_mode: str = "memory"


def models(name: str):
    return {"registrar": RegistrarModel}.get(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipline.toml"
    path.write_text(text)
    return path


def problems(path: Path, installed=("registrar",)) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, installed_plugins=list(installed), model_for=models)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:127.0.0.1:5060", ListenAddress("udp", "127.0.0.1", 5060)),
        ("TCP:[::1]:5070", ListenAddress("tcp", "::1", 5070)),
        ("udp:127.0.0.1", ListenAddress("udp", "127.0.0.1", 5060)),
        ("udp:[::1]", ListenAddress("udp", "::1", 5060)),
        ("tcp:0.0.0.0:0", ListenAddress("tcp", "0.0.0.0", 0)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sctp:127.0.0.1:5060", "transport one of udp, tcp"),
        ("127.0.0.1:5060", "transport one of udp, tcp"),
        ("udp:::1:5060", "IP address literal"),
        ("udp:example.com:5060", "IP address literal"),
        ("udp:[::1:5060", "unterminated IPv6"),
        ("udp:127.0.0.1:70000", "port 0..65535"),
        ("udp:127.0.0.1:http", "port 0..65535"),
    ],
)
def test_parse_listen_errors(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_listen(text)


def test_default_config_is_loopback_5060_with_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPLINE_DATA_DIR", str(tmp_path / "data"))
    config = default_config()
    assert [str(x) for x in config.server.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.server.plugins == []
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'sipline.db'}"
    assert config.mi.http == "127.0.0.1:8888"
    assert config.source is None


def test_full_file_and_relative_paths(tmp_path):
    (tmp_path / "routes.py").write_text("def route_request(ctx):\n    return None\n")
    path = write(
        tmp_path,
        """
[server]
listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5060"]
domains = ["Example.COM", "sip.example.com"]
plugins = ["registrar"]
script = "routes.py"
workers = 2
log_level = "debug"

[database]
url = "sqlite:///x.db"

[mi]
http = "127.0.0.1:8888"
socket = "run/mi.sock"

[plugins.registrar]
max_contacts = 3
""",
    )
    config = load_config(path, installed_plugins=["registrar"], model_for=models)
    assert config.server.listen[1] == ListenAddress("tcp", "::1", 5060)
    assert config.server.domains == ["example.com", "sip.example.com"]
    assert config.server.script == tmp_path / "routes.py"
    assert config.mi.socket == tmp_path / "run" / "mi.sock"
    assert config.server.workers == 2
    assert config.plugin("registrar") == RegistrarModel(max_contacts=3)
    assert config.source == path


def test_enabled_plugin_without_section_gets_defaults(tmp_path):
    path = write(tmp_path, '[server]\nplugins = ["registrar"]\n')
    config = load_config(path, installed_plugins=["registrar"], model_for=models)
    assert config.plugin("registrar") == RegistrarModel()


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "[server]\nlisten = 'udp:127.0.0.1:5060'\ncolour = 'blue'\n")
    text = problems(path)
    assert f"{path}: [server] colour: unknown key" in text


def test_unknown_key_in_plugin_section_is_named(tmp_path):
    path = write(tmp_path, '[server]\nplugins = ["registrar"]\n[plugins.registrar]\nmax_contact = 3\n')
    text = problems(path)
    assert f"{path}: [plugins.registrar] max_contact: unknown key" in text


def test_wrong_type_is_named_with_expectation(tmp_path):
    path = write(tmp_path, '[server]\nworkers = "two"\n[plugins.registrar]\nmax_contacts = "x"\n')
    text = problems(path)
    assert f"{path}: [server] workers:" in text and "valid integer" in text and "'two'" in text
    assert f"{path}: [plugins.registrar] max_contacts:" in text


def test_unknown_plugin_is_named(tmp_path):
    path = write(tmp_path, '[server]\nplugins = ["registrar", "nosuch"]\n')
    text = problems(path)
    assert "[server] plugins: unknown plugin 'nosuch'" in text
    assert "installed: registrar" in text


def test_section_for_unknown_plugin(tmp_path):
    path = write(tmp_path, "[plugins.ghost]\nx = 1\n")
    assert "[plugins.ghost]: unknown plugin 'ghost'" in problems(path)


def test_section_for_plugin_without_settings(tmp_path):
    path = write(tmp_path, '[server]\nplugins = ["plain"]\n[plugins.plain]\nx = 1\n')
    assert "plugin 'plain' takes no settings" in problems(path, installed=("plain",))


def test_every_problem_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        '[server]\nlisten = ["udp:127.0.0.1", "bogus"]\nlog_level = "loud"\n[unknown]\n',
    )
    text = problems(path)
    assert "[server] listen[1]:" in text
    assert "[server] log_level:" in text
    assert "[unknown]: unknown section" in text


def test_duplicate_plugin_and_bad_workers(tmp_path):
    path = write(tmp_path, '[server]\nplugins = ["registrar", "registrar"]\nworkers = 0\n')
    text = problems(path)
    assert "listed twice" in text
    assert "[server] workers:" in text


def test_invalid_toml_names_file(tmp_path):
    path = write(tmp_path, "[server\n")
    assert f"{path}: not valid TOML" in problems(path)


def test_missing_file(tmp_path):
    assert "file not found" in problems(tmp_path / "nope.toml")


def test_build_config_without_plugin_check():
    config = build_config({"server": {"plugins": ["anything"]}})
    assert config.server.plugins == ["anything"]
