"""config_model and migrations_location: what a plugin declares about itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from sipline.config import ConfigError, load_config
from sipline.hooks import hookimpl
from sipline.plugins import build_plugin_manager
from sipline.routing.default import CoreDefaults
from sipline.testing import inprocess_server

# ---------------------------------------------------------------- config_model


class AclSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str = "allow"
    reload_interval: float = 60.0


class Acl:
    def __init__(self) -> None:
        self.settings_at_startup: list[object] = []

    @hookimpl
    def config_model(self):
        return AclSettings

    @hookimpl
    def startup(self, server):
        self.settings_at_startup.append(server.plugin_config("acl"))


def test_hook_config_model_validates_section():
    acl = Acl()
    toml = {"plugins": {"acl": {"default": "deny"}}}
    with inprocess_server(toml, plugins=[("acl", acl)]) as srv:
        settings = srv.server.plugin_config("acl")
    assert isinstance(settings, AclSettings)
    assert (settings.default, settings.reload_interval) == ("deny", 60.0)
    assert acl.settings_at_startup == [settings]  # readable from startup on


def test_hook_config_model_defaults_without_section():
    with inprocess_server(plugins=[("acl", Acl())]) as srv:
        assert srv.server.plugin_config("acl") == AclSettings()


def test_hook_config_model_unknown_key_names_section_and_key():
    toml = {"plugins": {"acl": {"defualt": "deny"}}}
    with pytest.raises(ConfigError) as info:
        with inprocess_server(toml, plugins=[("acl", Acl())]):
            pass  # pragma: no cover - the configuration is refused first
    message = str(info.value)
    assert "[plugins.acl]" in message and "defualt" in message and "unknown key" in message


def test_hook_config_model_error_names_file(tmp_path: Path):
    path = tmp_path / "sipline.toml"
    path.write_text('[server]\nplugins = ["acl"]\n\n[plugins.acl]\nreload_intervall = 5\n')
    model_for = {"acl": AclSettings}.get
    with pytest.raises(ConfigError) as info:
        load_config(path, installed_plugins=["acl"], model_for=model_for)
    [problem] = info.value.problems
    assert str(path) in problem
    assert "[plugins.acl] reload_intervall" in problem
    assert "unknown key" in problem


def test_hook_config_model_bad_value_and_no_model():
    toml = {"plugins": {"acl": {"reload_interval": "soon"}}}
    with pytest.raises(ConfigError, match=r"\[plugins\.acl\] reload_interval"):
        with inprocess_server(toml, plugins=[("acl", Acl())]):
            pass  # pragma: no cover

    class NoSettings:
        @hookimpl
        def config_model(self):
            return None

    toml = {"plugins": {"plain": {"anything": 1}}}
    with pytest.raises(ConfigError, match="plugin 'plain' takes no settings"):
        with inprocess_server(toml, plugins=[("plain", NoSettings())]):
            pass  # pragma: no cover


def test_hook_config_model_through_plugin_manager():
    pm = build_plugin_manager([("acl", Acl())], defaults=CoreDefaults())
    assert pm.hook.config_model() == [AclSettings]


# -------------------------------------------------------- migrations_location


class WithTables:
    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def migrations_location(self):
        return str(self.path)


class WithoutTables:
    @hookimpl
    def migrations_location(self):
        return None


def test_hook_migrations_location_returns_plugin_path(tmp_path: Path):
    versions = tmp_path / "sipline_acl" / "migrations"
    pm = build_plugin_manager(
        [("acl", WithTables(versions)), ("stateless", WithoutTables())], defaults=CoreDefaults()
    )
    # Registered under the plugin's name, and a None answer is left out.
    impls = {impl.plugin_name for impl in pm.hook.migrations_location.get_hookimpls()}
    assert impls == {"acl", "stateless"}
    assert pm.hook.migrations_location() == [str(versions)]


def test_hook_migrations_location_none_without_plugins():
    pm = build_plugin_manager([], defaults=CoreDefaults())
    assert pm.hook.migrations_location() == []
