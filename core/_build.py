"""The optional mypyc build of the hot path: what it compiles, and what this installation runs.

``setup.py`` compiles :data:`MYPYC_MODULES` with mypyc unless ``SIPLINE_PURE_PYTHON=1`` (it
reads this file without importing the package, so keep it standard-library only). The
sources stay the reference: the compiled build runs the same code, about 1.5x faster.

An in-place build (``pip install -e .``) leaves the compiled extensions next to the sources,
where they would take precedence over an edited ``.py`` file. The build records a digest of
every compiled source (:data:`DIGESTS_FILE`); :func:`check_in_place_build`, run on
``import sipline``, compares them and, when a source changed since the build, warns and
imports every compiled module from its source instead (all or none: compiled modules call
each other natively). Rebuild with ``pip install -e .`` (or, with mypy and setuptools
installed, ``python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

#: Compiled by default: the per-message path. The rest stays interpreted: CLI, config, db,
#: plugin loading (mypyc 2.4 crashes on plugins.py), the transports (compiling
#: transport/base.py saved under 1%), the routing defaults and script loader (pluggy-marked
#: hook implementations; not attempted), actions (frozen slotted dataclasses), and package
#: ``__init__`` files.
MYPYC_MODULES = (
    "sipline.sip.errors",
    "sipline.sip.framing",
    "sipline.sip.headers",
    "sipline.sip.message",
    "sipline.sip.requests",
    "sipline.sip.uri",
    "sipline.transaction.base",
    "sipline.transaction.client",
    "sipline.transaction.clock",
    "sipline.transaction.keys",
    "sipline.transaction.layer",
    "sipline.transaction.server",
    "sipline.transaction.timers",
    "sipline.proxy.core",
    "sipline.proxy.nexthop",
    "sipline.proxy.result",
    "sipline.routing.context",
    "sipline.server",
)

#: The shared library holding the compiled code (the per-module extensions are stubs).
NATIVE_LIBRARY = "sipline._native__mypyc"

#: Written by an in-place build next to this file: {module: sha256 of its source}.
DIGESTS_FILE = "_native_sources.json"

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_path(module: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """The source file of ``module`` (a name from :data:`MYPYC_MODULES`)."""
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_modules() -> list[str]:
    """The modules of :data:`MYPYC_MODULES` this process runs compiled (empty: pure Python)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    out = []
    for name in MYPYC_MODULES:
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.find_spec(name)
            origin = spec.origin if spec is not None else None
        else:
            origin = getattr(module, "__file__", None)
        if origin is not None and origin.endswith(suffixes):
            out.append(name)
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their ``.py`` files, ahead of any compiled extension."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        return None if file is None else importlib.util.spec_from_file_location(fullname, file)


def check_in_place_build(package_dir: Path = _PACKAGE_DIR) -> list[str]:
    """Fall back to the sources when an in-place build is older than them.

    :returns: the modules whose source changed since the build (empty when the build is
        current, or when there is no in-place build: a pure-Python install or a wheel).
    """
    digests_file = package_dir / DIGESTS_FILE
    try:
        built: dict[str, str] = json.loads(digests_file.read_text())
    except (OSError, ValueError):
        return []
    changed = []
    for name in MYPYC_MODULES:
        path = source_path(name, package_dir)
        try:
            if built.get(name) != source_digest(path):
                changed.append(name)
        except OSError:
            changed.append(name)
    if changed and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(
            0, _SourceFinder({name: source_path(name, package_dir) for name in MYPYC_MODULES})
        )
        warnings.warn(
            f"sipline: {', '.join(changed)} changed since the compiled in-place build; running "
            "every compiled module from its source (slower). Rebuild: pip install -e . "
            "(or python setup.py build_ext --inplace); SIPLINE_PURE_PYTHON=1 pip install -e . "
            "removes the compiled build.",
            RuntimeWarning,
            stacklevel=2,
        )
    return changed
