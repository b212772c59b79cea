"""Build script: compiles the hot path with mypyc (metadata lives in pyproject.toml).

``pip install .`` / ``pip wheel .`` / ``pip install -e .`` compile the modules listed in
core/_build.py (about two minutes, needs a C compiler). ``SIPLINE_PURE_PYTHON=1`` builds pure
Python instead (and, for ``pip install -e .``, removes what an in-place build left in core/).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
BUILD = runpy.run_path(str(ROOT / "core" / "_build.py"))
MODULES: tuple[str, ...] = BUILD["MYPYC_MODULES"]
PURE = os.environ.get("SIPLINE_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no")
# mypyc names modules after their folders; the sources live in core/ but import as `sipline`,
# so they are compiled from a copy in build/mypyc-src/sipline/ (paths relative to the project,
# which pip makes the working directory: they end up in tracebacks).
STAGE = Path("build", "mypyc-src")


def _in_place_artifacts() -> list[Path]:
    """What in-place builds left in core/: the digests, the shared library, and every
    extension module next to a same-named source (also of modules no longer compiled)."""
    core = ROOT / "core"
    found = [core / BUILD["DIGESTS_FILE"]]
    found.extend(core.glob(BUILD["NATIVE_LIBRARY"].rpartition(".")[2] + ".*"))
    for ext in (*core.rglob("*.so"), *core.rglob("*.pyd")):
        stem = ext.name.partition(".")[0]
        if ext.with_name(stem + ".py").exists():
            found.append(ext)
    return [p for p in found if p.exists()]


def _mypyc_extensions() -> list[Any]:
    from mypyc.build import mypycify

    os.chdir(ROOT)
    shutil.rmtree(STAGE, ignore_errors=True)
    shutil.copytree(
        "core",
        STAGE / "sipline",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", BUILD["DIGESTS_FILE"]),
    )
    paths = [
        str(STAGE.joinpath(*name.split(".")).with_suffix(".py")) for name in MODULES
    ]
    return mypycify(
        # Third-party packages (pydantic, pluggy...) are not installed in an isolated build.
        ["--ignore-missing-imports", *paths],
        opt_level="3",
        group_name=BUILD["NATIVE_LIBRARY"].removesuffix("__mypyc"),
    )


class BuildExt(build_ext):
    """Runs mypyc only when extensions are built (not for metadata), and records, for an
    in-place build, the digest of every compiled source."""

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception:
            print(
                "\nsipline: compiling the hot path with mypyc failed (a C compiler and the "
                "Python headers are needed). SIPLINE_PURE_PYTHON=1 installs the pure-Python "
                "build, which runs the same code, slower.\n",
                file=sys.stderr,
            )
            raise

    def finalize_options(self) -> None:
        if not PURE:
            self.distribution.ext_modules = _mypyc_extensions()
        super().finalize_options()

    def run(self) -> None:
        if self.inplace:
            for stale in _in_place_artifacts():
                stale.unlink()
        super().run()
        if self.inplace and not PURE:
            # Digests of the copies mypyc compiled (core/ may have changed meanwhile).
            staged = ROOT / STAGE / "sipline"
            digests = {
                name: BUILD["source_digest"](BUILD["source_path"](name, staged))
                for name in MODULES
            }
            (ROOT / "core" / BUILD["DIGESTS_FILE"]).write_text(json.dumps(digests, indent=1))


class EditableWheel(editable_wheel):
    """A pure-Python editable install removes what an in-place compiled build left in core/
    (it would shadow the sources). Other builds leave the source tree alone."""

    def run(self) -> None:
        if PURE:
            for stale in _in_place_artifacts():
                stale.unlink()
        super().run()


if PURE:
    ext_modules: list[Extension] = []
else:
    # A stand-in that marks the distribution as having extensions (platform wheel);
    # BuildExt replaces it with mypyc's.
    ext_modules = [Extension(BUILD["NATIVE_LIBRARY"], sources=[])]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt, "editable_wheel": EditableWheel})
