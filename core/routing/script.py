"""Loading the Python routing script named in ``[server] script``.

A routing script is a plain module whose top-level functions are named after
route stages (``route_request(ctx)``, ``route_failure(ctx)``...). They are
registered as the plugin ``script``, which runs before every other plugin.
Functions of other names are the script's own helpers and are left alone.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from sipline.hooks import hookimpl
from sipline.plugins import STAGES


class ScriptError(Exception):
    """The routing script cannot be loaded; the message names file and line."""


LIFECYCLE = ("startup", "shutdown", "timer")


def load_script(path: Path) -> Any:
    """Compile and execute the script at ``path``; return a registrable plugin object."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read routing script: {exc.strerror}") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ScriptError(
            f"{path}:{exc.lineno}: syntax error in routing script: {exc.msg}"
        ) from None
    module = types.ModuleType(f"sipline_script_{abs(hash(str(path)))}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        raise ScriptError(
            f"{path}: routing script failed while loading: {type(exc).__name__}: {exc}"
        ) from exc

    plugin = types.SimpleNamespace()
    found = False
    for name in (*STAGES, *LIFECYCLE):
        fn = module.__dict__.get(name)
        if fn is None:
            continue
        if not callable(fn):
            raise ScriptError(f"{path}: {name} must be a function")
        # tryfirst: the script always gets the first say (DESIGN §4).
        setattr(plugin, name, hookimpl(tryfirst=True)(fn))
        found = True
    if not found:
        raise ScriptError(
            f"{path}: the routing script defines none of the route stages "
            f"({', '.join(s for s in STAGES)})"
        )
    plugin.__sipline_module__ = module
    return plugin
