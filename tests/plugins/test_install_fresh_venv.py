"""Every plugin installs with pip next to the core in a fresh virtual environment and is
discovered: exactly what a user's `pip install sipline ./plugins/<name>` does.

The venv has no access to this environment's packages; pip takes the dependencies from
the configured index. Skipped (saying why) when the venv or the index is not usable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())

pytestmark = pytest.mark.e2e


def _copy(src: Path, dst: Path) -> Path:
    # Build from a copy: an in-tree build leaves build/ and egg-info behind.
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
        "*.egg-info", "__pycache__", "build", "dist", ".pytest_cache", "tests", "bench",
        ".git", "data"))
    return dst


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A venv with the core installed from this checkout (not editable)."""
    where = tmp_path_factory.mktemp("venv")
    env_dir = where / "env"
    try:
        venv.EnvBuilder(with_pip=True).create(env_dir)
    except Exception as exc:  # noqa: BLE001 - no ensurepip on this Python
        pytest.skip(f"cannot create a venv with pip: {exc}")
    python = env_dir / "bin" / "python"
    core = _copy(ROOT, where / "core-src")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(core)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"pip could not install the core's dependencies: {done.stderr[-500:]}")
    return python


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_installs_alone_and_is_discovered(fresh, name, tmp_path):
    src = _copy(ROOT / "plugins" / name, tmp_path / name)
    done = subprocess.run([str(fresh), "-m", "pip", "install", "--quiet", str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        out = subprocess.run([str(fresh), "-m", "sipline", "plugins", "--json"],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        rows = {row["name"]: row for row in json.loads(out.stdout)}
        assert set(rows) == {name}, "only the plugin just installed is there"
        assert rows[name]["dist"] == f"sipline-{name.replace('_', '-')}"
        where = subprocess.run(
            [str(fresh), "-c", "import importlib; m = importlib.import_module("
             f"'sipline_{name}'); print(m.__file__)"],
            capture_output=True, text=True, timeout=60, env=env)
        assert "site-packages" in where.stdout, where.stdout + where.stderr
    finally:
        subprocess.run([str(fresh), "-m", "pip", "uninstall", "--quiet", "--yes",
                        f"sipline-{name.replace('_', '-')}"], capture_output=True, timeout=120)


def test_the_core_alone_has_no_plugins(fresh):
    out = subprocess.run([str(fresh), "-m", "sipline", "plugins", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
