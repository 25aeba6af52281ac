"""The typed component registry built from the registration hooks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

import pluggy

from .components import BASES, Component
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

    def get(self, kind: str, name: str) -> type[Component]:
        table = self.classes.get(kind, {})
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(table)) or "none"
        raise UnknownComponentError(f"unknown {kind} '{name}'.{hint} Known {PLURAL[kind]}: {known}")

    def owner(self, kind: str, name: str) -> str:
        return self.owners[(kind, name)]


def _collect(pm: pluggy.PluginManager, kind: str, registry: Registry) -> None:
    hook = getattr(pm.hook, _HOOK_BY_KIND[kind])
    base = BASES[kind]
    table = registry.classes.setdefault(kind, {})
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name
        try:
            result = impl.function()
        except Exception as exc:  # noqa: BLE001
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
                    f"{kind} name '{cls.name}' is registered twice: by plugin '{other}' and by "
                    f"plugin '{plugin_name}'. Rename one, or disable one with -p no:NAME."
                )
            table[cls.name] = cls
            registry.owners[(kind, cls.name)] = plugin_name


def build_registry(
    disabled: Iterable[str] = (), extra_modules: Iterable[str] = (), autoload: bool | None = None
) -> Registry:
    pm, infos = create_plugin_manager(disabled, extra_modules, autoload)
    registry = Registry(pm=pm, plugins=infos)
    for kind in _HOOK_BY_KIND:
        _collect(pm, kind, registry)
    return registry
