"""The optional mypyc build (setup.py, sipline/_build.py).

``SIPLINE_EXPECT_BUILD=compiled|pure`` (set by .ci/run) makes the suite fail when the
installation is not the build it is meant to test, so that "both builds pass" cannot quietly
become "the same build passed twice".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipline._build import (
    DIGESTS_FILE,
    MYPYC_MODULES,
    compiled_modules,
    source_digest,
    source_path,
)

ROOT = Path(__file__).resolve().parents[2]


def test_compiled_modules_exist_and_are_not_packages() -> None:
    for name in MYPYC_MODULES:
        path = source_path(name, ROOT / "core")
        assert path.is_file(), name
        assert path.name != "__init__.py", name


def test_build_is_the_expected_one() -> None:
    expected = os.environ.get("SIPLINE_EXPECT_BUILD")
    if not expected:
        pytest.skip("SIPLINE_EXPECT_BUILD is not set")
    assert expected in ("compiled", "pure")
    compiled = compiled_modules()
    if expected == "compiled":
        assert compiled == list(MYPYC_MODULES)
    else:
        assert compiled == []


def _import_from(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, sipline, sipline.sip.message as m; "
        "print(m.__file__); "
        "print(type(sys.meta_path[0]).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )


def test_a_source_edited_after_an_in_place_build_is_not_shadowed(tmp_path: Path) -> None:
    # A copy of the package with the digests an in-place build writes (no extensions: the
    # fallback is what is checked, the same whether or not they exist).
    pkg = tmp_path / "sipline"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", DIGESTS_FILE)
    shutil.copytree(ROOT / "core", pkg, ignore=ignore)
    digests = {name: source_digest(source_path(name, pkg)) for name in MYPYC_MODULES}
    (pkg / DIGESTS_FILE).write_text(json.dumps(digests))

    current = _import_from(tmp_path)
    assert current.stderr == ""
    assert current.stdout.splitlines()[0] == str(pkg / "sip" / "message.py")
    assert current.stdout.splitlines()[1] != "_SourceFinder"

    with (pkg / "proxy" / "nexthop.py").open("a") as f:
        f.write("# edited\n")
    stale = _import_from(tmp_path)
    assert "sipline.proxy.nexthop changed since the compiled in-place build" in stale.stderr
    assert "pip install -e ." in stale.stderr
    # Every compiled module now comes from its source, ahead of any extension.
    assert stale.stdout.splitlines() == [str(pkg / "sip" / "message.py"), "_SourceFinder"]
