"""Meta-tests: every hook in ``sipline.hooks`` is documented and tested.

They fail when a hookspec is added, renamed or changed without its docstring,
its section in ``docs/plugin-hooks.md`` or a ``test_hook_<name>...`` test
following, and when the guide keeps a section for a hook that is gone.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sipline import hooks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugin-hooks.md"
TESTS = ROOT / "tests"

SPEC_MARKER = f"{hooks.PROJECT}_spec"
FIRSTRESULT_PHRASE = "Stops at first non-None result"


def hookspecs() -> dict[str, Callable[..., Any]]:
    """Every function of ``sipline.hooks`` that carries the hookspec marker."""
    return {
        name: fn
        for name, fn in vars(hooks).items()
        if inspect.isfunction(fn) and hasattr(fn, SPEC_MARKER)
    }


SPECS = hookspecs()


class _Verbatim:
    """Renders an annotation string as written (``inspect`` would quote it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _verbatim(annotation: Any) -> Any:
    return _Verbatim(annotation) if isinstance(annotation, str) else annotation


def documented_signature(name: str, fn: Callable[..., Any]) -> str:
    """``f"{name}{inspect.signature(fn)}"`` with the annotations as written in hooks.py.

    ``sipline.hooks`` uses ``from __future__ import annotations``, so every
    annotation is the source text; ``inspect`` would show it quoted.
    """
    sig = inspect.signature(fn)
    sig = sig.replace(
        parameters=[p.replace(annotation=_verbatim(p.annotation)) for p in sig.parameters.values()],
        return_annotation=_verbatim(sig.return_annotation),
    )
    return f"{name}{sig}"


def is_firstresult(fn: Callable[..., Any]) -> bool:
    return bool(getattr(fn, SPEC_MARKER).get("firstresult"))


@cache
def doc_sections() -> dict[str, str]:
    """The guide's level-2 headings in backticks, mapped to their section text."""
    text = DOCS.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current: str | None = None
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("#"):
            match = re.fullmatch(r"## `(.+)`\s*", line)
            current = match.group(1) if match else None
            if current is not None:
                if current in sections:
                    raise AssertionError(f"{DOCS}: heading `{current}` appears twice")
                sections[current] = ""
            continue
        if current is not None:
            sections[current] += line + "\n"
    return sections


@cache
def hook_tests() -> dict[str, list[str]]:
    """Hook name -> ``test_hook_<name>...`` functions found under tests/ (by ast)."""
    by_hook: dict[str, list[str]] = {name: [] for name in SPECS}
    # Longest name first, so that a hook whose name extends another one's
    # (say ``route`` and ``route_request``) claims its own tests.
    names = sorted(SPECS, key=len, reverse=True)
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if not node.name.startswith("test_hook_"):
                continue
            rest = node.name[len("test_hook_") :]
            for hook in names:
                if rest == hook or rest.startswith(hook + "_"):
                    rel = path.relative_to(ROOT)
                    by_hook[hook].append(f"{rel}::{node.name}")
                    break
    return by_hook


def test_hookspecs_are_found() -> None:
    # Guards the marker lookup itself: without it every check below is vacuous.
    assert {"route_request", "startup", "config_model"} <= set(SPECS)
    for name, fn in SPECS.items():
        assert fn.__name__ == name


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstring(name: str) -> None:
    fn = SPECS[name]
    doc = inspect.getdoc(fn)
    assert doc, f"hookspec {name} has no docstring"
    assert ":returns:" in doc, f"hookspec {name}: docstring lacks ':returns:'"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"hookspec {name}: docstring lacks ':param {param}:'"
    if is_firstresult(fn):
        assert FIRSTRESULT_PHRASE in doc, (
            f"hookspec {name} is firstresult; its docstring must say {FIRSTRESULT_PHRASE!r}"
        )
    else:
        assert FIRSTRESULT_PHRASE not in doc, (
            f"hookspec {name} is not firstresult but its docstring says {FIRSTRESULT_PHRASE!r}"
        )


def test_documented_signature_format() -> None:
    # The heading format of the guide, pinned on one hook.
    assert documented_signature("route_request", SPECS["route_request"]) == (
        "route_request(ctx: RequestContext) -> Action | Awaitable[Action | None] | None"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_docs_section_per_hook(name: str) -> None:
    expected = documented_signature(name, SPECS[name])
    sections = doc_sections()
    assert expected in sections, (
        f"{DOCS.relative_to(ROOT)} has no heading '## `{expected}`' "
        f"(headings for {name}: "
        f"{[h for h in sections if h.split('(', 1)[0] == name] or 'none'})"
    )
    body = sections[expected]
    # The section says whether the hook is firstresult, and says it right.
    if is_firstresult(SPECS[name]):
        assert "**Firstresult.** Yes" in body, f"section {name}: must say '**Firstresult.** Yes'"
    else:
        assert "**Not firstresult" in body, f"section {name}: must say '**Not firstresult'"
    assert "```python" in body, f"section {name}: needs a short example"


def test_docs_have_no_stale_hook_sections() -> None:
    current = {documented_signature(name, fn) for name, fn in SPECS.items()}
    stale = [
        heading
        for heading in doc_sections()
        if re.match(r"[A-Za-z_]\w*\(", heading) and heading not in current
    ]
    assert not stale, (
        f"{DOCS.relative_to(ROOT)} documents hooks that do not exist (or with an old "
        f"signature): {stale}"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_tests_exist_per_hook(name: str) -> None:
    found = hook_tests()[name]
    assert found, (
        f"no test for hook {name}: add a test function named test_hook_{name} or "
        f"test_hook_{name}_<what> under tests/"
    )
