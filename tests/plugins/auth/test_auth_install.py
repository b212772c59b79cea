"""The distribution installs on its own next to the core, carries its migrations, and is listed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[3] / "plugins" / "auth"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src") / "auth"
    # build from a copy: an in-tree build would leave build/ and egg-info behind
    shutil.copytree(PLUGIN_DIR, build, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(build)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return target


def env_with(site: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path}


def test_wheel_carries_the_package_and_its_migrations(site):
    assert (site / "sipline_auth" / "plugin.py").is_file()
    assert (site / "sipline_auth" / "migrations" / "auth_0001_subscriber.py").is_file()
    (info,) = site.glob("sipline_auth-0.1.0.dist-info")
    entry_points = (info / "entry_points.txt").read_text()
    assert "[sipline]\nauth = sipline_auth.plugin" in entry_points
    assert "[sipline.migrations]\nauth = sipline_auth.migrations" in entry_points


def test_sipline_plugins_lists_it_and_finds_its_revisions(site, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[server]\nplugins = ["auth"]\n')
    env = env_with(site)
    out = subprocess.run([sys.executable, "-m", "sipline", "plugins", "--json", "-c", str(cfg)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["auth"]["dist"] == "sipline-auth"
    assert rows["auth"]["entry_point"] == "sipline_auth.plugin"
    assert rows["auth"]["enabled"] is True
    code = ("from sipline.db import plugin_version_locations as p; "
            "print(p()['auth'])")
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=60)
    assert where.stdout.strip() == str(site / "sipline_auth" / "migrations")
