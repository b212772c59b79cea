"""Plugin discovery (entry points), the plugin manager, and the fast stage pipeline.

Plugins are distributions that declare an entry point in the group ``sipline``;
its name is the plugin's name (the same as its TOML section
``[plugins.<name>]``) and its value is an object (usually a module) carrying
``@hookimpl`` functions. Only plugins listed in ``[server] plugins`` are
registered, in that order; the routing script, when configured, runs before
them and the core's default script after them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from sipline import hooks

log = logging.getLogger("sipline.plugins")

ENTRY_POINT_GROUP = "sipline"

#: Hooks dispatched per message by :class:`Pipeline` rather than through pluggy's
#: generic caller (same order, same semantics, less overhead, and errors carry
#: the plugin's name).
STAGES = (
    "message_received",
    "route_request",
    "route_reply",
    "route_branch",
    "route_failure",
    "route_local",
    "route_error",
)


class PluginError(Exception):
    """A plugin could not be discovered, loaded or registered."""


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin, as its distribution declares it."""

    name: str
    dist: str
    version: str
    value: str  # "module:attr" of the entry point
    entry_point: EntryPoint

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except Exception as exc:  # any import-time failure of third-party code
            raise PluginError(
                f"plugin {self.name!r} ({self.dist} {self.version}) failed to load "
                f"from {self.value}: {type(exc).__name__}: {exc}"
            ) from exc


def discover() -> dict[str, PluginInfo]:
    """Every plugin installed in this environment, by name."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        info = PluginInfo(ep.name, dist_name, version, ep.value, ep)
        other = found.get(ep.name)
        if other is not None and other.dist != info.dist:
            raise PluginError(
                f"two installed distributions provide plugin {ep.name!r}: "
                f"{other.dist} and {info.dist}; uninstall one"
            )
        found[ep.name] = info
    return found


class PluginLoader:
    """Loads installed plugins on demand and remembers the loaded objects."""

    def __init__(self, installed: dict[str, PluginInfo] | None = None) -> None:
        self.installed = discover() if installed is None else installed
        self._loaded: dict[str, Any] = {}

    def load(self, name: str) -> Any:
        if name not in self._loaded:
            info = self.installed.get(name)
            if info is None:
                raise PluginError(f"plugin {name!r} is not installed")
            self._loaded[name] = info.load()
        return self._loaded[name]

    def config_model(self, name: str) -> Any:
        """The pydantic model plugin ``name`` declares for its section, or None."""
        obj = self.load(name)
        pm = new_plugin_manager()
        register(pm, obj, name)
        impls = pm.hook.config_model.get_hookimpls()
        if not impls:
            return None
        model = impls[0].function()
        if model is not None and not (
            isinstance(model, type) and hasattr(model, "model_validate")
        ):
            raise PluginError(
                f"plugin {name!r}: config_model() must return a pydantic model class, "
                f"got {model!r}"
            )
        return model


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hooks.PROJECT)
    pm.add_hookspecs(hooks)
    return pm


def register(pm: pluggy.PluginManager, obj: Any, name: str) -> None:
    """Register ``obj`` as plugin ``name``, turning pluggy's errors into PluginError."""
    try:
        pm.register(obj, name=name)
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
    unknown = [
        attr
        for attr in dir(obj)
        if attr.startswith("route_") and not hasattr(pm.hook, attr)
    ]
    if unknown:
        pm.unregister(name=name)
        raise PluginError(
            f"plugin {name!r} defines {', '.join(unknown)}, which is not a route stage "
            f"(stages: {', '.join(s for s in STAGES if s.startswith('route_'))})"
        )


def build_plugin_manager(
    enabled: Iterable[tuple[str, Any]],
    *,
    defaults: Any | None = None,
    script: Any | None = None,
) -> pluggy.PluginManager:
    """A plugin manager with the pipeline in the documented order.

    pluggy calls the most recently registered implementation first, so the
    core defaults are registered first, the plugins in reverse TOML order, and
    the routing script last.
    """
    pm = new_plugin_manager()
    if defaults is not None:
        register(pm, defaults, "core")
    for name, obj in reversed(list(enabled)):
        register(pm, obj, name)
    if script is not None:
        register(pm, script, "script")
    return pm


class HookError(Exception):
    """An exception raised inside a plugin's hook implementation."""

    def __init__(self, plugin: str, hook: str, exc: BaseException) -> None:
        self.plugin = plugin
        self.hook = hook
        self.exc = exc
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(exc).__name__}: {exc}")


class Pipeline:
    """Per-message dispatch of the route stages.

    Keeps, for each stage, the tuple of ``(plugin name, function)`` in call
    order, recomputed only when plugins change (:meth:`refresh`), so the hot
    path is a plain loop with no per-call allocation beyond the result.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._stages: dict[str, tuple[tuple[str, Any, bool], ...]] = {}
        self.refresh()

    def refresh(self) -> None:
        for stage in STAGES:
            caller = getattr(self.pm.hook, stage)
            impls = []
            for impl in reversed(caller.get_hookimpls()):
                if impl.hookwrapper or impl.wrapper:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: wrappers are not supported on {stage}"
                    )
                impls.append((impl.plugin_name, impl.function, bool(impl.argnames)))
            self._stages[stage] = tuple(impls)

    def impls(self, stage: str) -> tuple[tuple[str, Any, bool], ...]:
        return self._stages[stage]

    def first(self, stage: str, ctx: Any) -> tuple[str, Any]:
        """Call ``stage`` implementations until one returns non-None.

        :returns: ``(plugin name, result)``; ``("", None)`` when all declined.
        :raises HookError: naming the plugin whose implementation raised.
        """
        index, result = self.first_at(stage, ctx)
        return (self._stages[stage][index][0], result) if result is not None else ("", None)

    def first_at(self, stage: str, ctx: Any, start: int = 0) -> tuple[int, Any]:
        """Like :meth:`first`, starting at implementation ``start``.

        :returns: ``(index, result)`` of the implementation that decided, so
            that an awaitable resolving to ``None`` (an asynchronous decline)
            can resume the pipeline at ``index + 1``; ``(-1, None)`` when all
            declined.
        """
        impls = self._stages[stage]
        for index in range(start, len(impls)):
            name, fn, takes_ctx = impls[index]
            try:
                result = fn(ctx) if takes_ctx else fn()
            except Exception as exc:
                raise HookError(name, stage, exc) from exc
            if result is not None:
                return index, result
        return -1, None

    def plugin_at(self, stage: str, index: int) -> str:
        """The name of the plugin at ``index`` of ``stage``."""
        return self._stages[stage][index][0] if index >= 0 else "script handler"

    async def settle(self, stage: str, ctx: Any, index: int, awaitable: Any) -> Any:
        """Finish a firstresult stage whose implementation ``index`` returned ``awaitable``.

        An awaitable resolving to ``None`` is a late decline: the pipeline resumes at
        ``index + 1`` (``index`` -1 means the awaitable came from outside the pipeline,
        e.g. an armed failure handler, so every implementation is asked).

        :returns: the deciding result, or None when everything declined.
        :raises HookError: naming the plugin whose implementation (or awaitable) raised.
        """
        while True:
            try:
                result = await awaitable
            except Exception as exc:
                raise HookError(self.plugin_at(stage, index), stage, exc) from exc
            if result is not None:
                return result
            index, result = self.first_at(stage, ctx, index + 1)
            if not inspect.isawaitable(result):
                return result
            awaitable = result

    def each(self, stage: str, ctx: Any) -> list[tuple[str, Any]]:
        """Call every ``stage`` implementation; collect the non-None results."""
        results = []
        for name, fn, takes_ctx in self._stages[stage]:
            try:
                result = fn(ctx) if takes_ctx else fn()
            except Exception as exc:
                raise HookError(name, stage, exc) from exc
            if result is not None:
                results.append((name, result))
        return results
