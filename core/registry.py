"""The typed component registry built from the registration hooks."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import pluggy

from .components import BASES, Backbone, Component, DataFilter, Method, Metric
from .errors import PluginError, UnknownComponentError
from .plugin_manager import PluginInfo, create_plugin_manager

_HOOK_BY_KIND = {
    "backbone": "ttsadapt_register_backbones",
    "method": "ttsadapt_register_methods",
    "metric": "ttsadapt_register_metrics",
    "filter": "ttsadapt_register_filters",
}
PLURAL = {"backbone": "backbones", "method": "methods", "metric": "metrics", "filter": "filters"}


@dataclass
class Registry:
    """Component classes by kind and name, with the plugin that registered each."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    classes: dict[str, dict[str, type[Component]]] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        return sorted(self.classes.get(kind, {}))

    # the kind names the base class, so callers get e.g. a Method class, not a bare Component
    @overload
    def get(self, kind: Literal["backbone"], name: str) -> type[Backbone]: ...
    @overload
    def get(self, kind: Literal["method"], name: str) -> type[Method]: ...
    @overload
    def get(self, kind: Literal["metric"], name: str) -> type[Metric]: ...
    @overload
    def get(self, kind: Literal["filter"], name: str) -> type[DataFilter]: ...
    @overload
    def get(self, kind: str, name: str) -> type[Component]: ...

    def get(self, kind: str, name: str) -> type[Component]:
        table = self.classes.get(kind, {})
        if name in table:
            return table[name]
        owner = self.disabled_owner(kind, name)
        if owner is not None:
            raise UnknownComponentError(
                f"{kind} '{name}' belongs to plugin '{owner}', which is disabled by -p no:{owner}; "
                f"drop -p no:{owner} to use it"
            )
        broken = self.broken_plugins()
        if broken:
            first = broken[0]
            raise PluginError(
                f"{kind} '{name}' is not registered, and plugin '{first.name}' ({first.module}) "
                f"could not be loaded: {first.error}"
            )
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(table)) or "none"
        raise UnknownComponentError(f"unknown {kind} '{name}'.{hint} Known {PLURAL[kind]}: {known}")

    def owner(self, kind: str, name: str) -> str:
        return self.owners[(kind, name)]

    def broken_plugins(self) -> list[PluginInfo]:
        """Plugins that failed to import or to register (only with ``tolerate_broken``)."""
        return [p for p in self.plugins if p.broken]

    def disabled_owner(self, kind: str, name: str) -> str | None:
        """The disabled plugin (``-p no:NAME``) that would register ``kind`` ``name``, if any.

        Asked only when a name is unknown: each disabled plugin is imported (not registered) and
        its registration hook called, to see what it provides; one that fails is skipped.
        """
        disabled = getattr(self.pm, "ttsadapt_disabled", {}) or {}
        for plugin_name, source in sorted(disabled.items()):
            try:
                plugin = source.load()
                hook = getattr(plugin, _HOOK_BY_KIND[kind], None)
                provided = list(hook() or []) if callable(hook) else []
            except Exception:  # noqa: BLE001 - a hint only: a plugin that fails gives none
                continue
            if any(getattr(cls, "name", None) == name for cls in provided):
                return plugin_name
        return None


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _collect(
    pm: pluggy.PluginManager, kind: str, registry: Registry, tolerate_broken: bool = False
) -> None:
    for impl in getattr(pm.hook, _HOOK_BY_KIND[kind]).get_hookimpls():
        try:
            _collect_one(impl, kind, registry)
        except PluginError as exc:
            if not tolerate_broken:
                raise
            _mark_broken(registry, impl.plugin_name, str(exc).splitlines()[0])


def _mark_broken(registry: Registry, plugin_name: str, error: str) -> None:
    for i, info in enumerate(registry.plugins):
        if info.name == plugin_name and not info.broken:
            registry.plugins[i] = dataclasses.replace(info, error=error)
    for key in [k for k, owner in registry.owners.items() if owner == plugin_name]:
        registry.classes[key[0]].pop(key[1], None)
        del registry.owners[key]


def _collect_one(impl: pluggy.HookImpl, kind: str, registry: Registry) -> None:
    base = BASES[kind]
    table = registry.classes.setdefault(kind, {})
    plugin_name = impl.plugin_name
    try:
        result: Any = impl.function()  # checked class by class below
    except Exception as exc:
        raise PluginError(
            f"plugin '{plugin_name}' raised in {_HOOK_BY_KIND[kind]}: {type(exc).__name__}: {exc}"
        ) from exc
    for cls in result or []:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin '{plugin_name}' returned {cls!r} from {_HOOK_BY_KIND[kind]}; "
                f"expected a subclass of ttsadapt.components.{base.__name__}"
            )
        if not cls.name:
            raise PluginError(f"plugin '{plugin_name}': {cls.__name__} has no `name`")
        if cls.name in table:
            other = registry.owners[(kind, cls.name)]
            raise PluginError(
                f"{kind} name '{cls.name}' is registered twice: by plugin '{other}' (class "
                f"{_class_name(table[cls.name])}) and by plugin '{plugin_name}' (class "
                f"{_class_name(cls)}). Rename one, or disable one with -p no:{plugin_name}."
            )
        table[cls.name] = cls
        registry.owners[(kind, cls.name)] = plugin_name


def build_registry(
    disabled: Iterable[str] = (),
    extra_modules: Iterable[str] = (),
    autoload: bool | None = None,
    tolerate_broken: bool = False,
) -> Registry:
    """The registry of every enabled plugin's components.

    A plugin that fails to import or whose registration hook raises is a :class:`PluginError`
    naming it; with ``tolerate_broken`` (``ttsadapt plugins``) it is kept in ``plugins`` with its
    ``error`` instead, and asking for a component that is not registered names it.
    """
    pm, infos = create_plugin_manager(disabled, extra_modules, autoload, tolerate_broken)
    registry = Registry(pm=pm, plugins=infos)
    for kind in _HOOK_BY_KIND:
        _collect(pm, kind, registry, tolerate_broken)
    return registry
