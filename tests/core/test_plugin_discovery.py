"""Entry-point discovery with a real throwaway plugin distribution.

The distribution is built and installed by pip into a temporary folder (no
network: no build isolation, no dependencies) and put on PYTHONPATH of real
``sipline`` subprocesses, exactly as a user's ``pip install sipline-<name>``
would make it visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipline.testing import ServerProcess, SipClient, free_port, options_request

PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "sipline-throwaway"
version = "1.2.3"
dependencies = []

[project.entry-points.sipline]
throwaway = "sipline_throwaway.plugin"

[tool.setuptools]
packages = ["sipline_throwaway"]
"""

PLUGIN = '''
"""A throwaway plugin: answers OPTIONS for the user "throwaway" with its greeting."""
from pydantic import BaseModel, ConfigDict

from sipline.hooks import hookimpl

_state = {}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    greeting: str = "hello"


@hookimpl
def config_model():
    return Settings


@hookimpl
def startup(server):
    _state["greeting"] = server.plugin_config("throwaway").greeting


@hookimpl
def route_request(ctx):
    if ctx.msg.method == "OPTIONS" and getattr(ctx.msg.uri, "user", None) == "throwaway":
        return ctx.reply(200, _state["greeting"])
    return None
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("throwaway-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    pkg = src / "sipline_throwaway"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True,
        capture_output=True,
    )
    assert list(target.glob("sipline_throwaway-1.2.3.dist-info"))
    return target


def env_with(site: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path}


def sipline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipline", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_plugins_lists_installed_distribution(site, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[server]\nplugins = ["throwaway"]\n')
    out = sipline("plugins", "--json", "-c", str(cfg), env=env_with(site))
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["throwaway"] == {
        "name": "throwaway",
        "version": "1.2.3",
        "dist": "sipline-throwaway",
        "entry_point": "sipline_throwaway.plugin",
        "enabled": True,
    }
    table = sipline("plugins", env=env_with(site))
    assert table.returncode == 0
    assert "throwaway" in table.stdout and "sipline-throwaway" in table.stdout and "1.2.3" in table.stdout


def test_not_discovered_without_the_distribution(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[server]\nplugins = ["throwaway"]\n')
    out = sipline("check", "-c", str(cfg), env=dict(os.environ))
    assert out.returncode == 1
    assert "unknown plugin 'throwaway'" in out.stderr


def test_check_validates_plugin_section(site, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[server]\nplugins = ["throwaway"]\n[plugins.throwaway]\ngreting = "typo"\n')
    out = sipline("check", "-c", str(cfg), env=env_with(site))
    assert out.returncode == 1
    assert f"{cfg}: [plugins.throwaway] greting: unknown key" in out.stderr
    cfg.write_text('[server]\nplugins = ["throwaway"]\n[plugins.throwaway]\ngreeting = "hi"\n')
    out = sipline("check", "-c", str(cfg), env=env_with(site))
    assert out.returncode == 0, out.stderr
    assert "plugins: throwaway" in out.stdout


@pytest.mark.parametrize("enabled", [True, False])
def test_enabled_plugin_is_called_by_running_server(site, tmp_path, enabled):
    port = free_port()
    plugins = '["throwaway"]' if enabled else "[]"
    config = (
        f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nplugins = {plugins}\n'
        '[plugins.throwaway]\ngreeting = "Hello from throwaway"\n'
    )
    proc = ServerProcess(config, tmp_path, env={"PYTHONPATH": env_with(site)["PYTHONPATH"]})
    proc.start(probe=("127.0.0.1", port))
    try:
        client = SipClient(("127.0.0.1", port))
        resp = client.request(
            options_request(f"127.0.0.1:{port}", local=client.local_hostport,
                            ruri=f"sip:throwaway@127.0.0.1:{port}")
        )
        client.close()
    finally:
        assert proc.stop() == 0, proc.log()
    if enabled:
        assert (resp.status, resp.reason) == (200, "Hello from throwaway")
    else:
        assert resp.status == 404
