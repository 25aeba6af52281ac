"""Builds the pluggy PluginManager: specs, built-ins, the ``ttsadapt.plugins`` entry points.

User control: ``TTSADAPT_DISABLE_PLUGIN_AUTOLOAD=1`` stops entry-point autoload (built-ins stay),
``-p no:NAME`` (``disabled=[NAME]``) blocks a plugin by name, ``-p MODULE`` loads a module as a
plugin. A plugin that fails to import is a :class:`PluginError` naming it, never a quiet log line;
only ``ttsadapt plugins`` (``tolerate_broken=True``) goes on and lists it as broken with its error.
A module given with ``-p`` that is already loaded (an installed entry point, a built-in) is loaded
once, with a warning; a disabled plugin's name and source are kept, so asking for one of its
components can say that it is disabled (see :meth:`ttsadapt.registry.Registry.get`).
"""

from __future__ import annotations

import importlib
import os
import traceback
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import pluggy

from . import __version__, hookspecs
from .builtins import BUILTIN_PLUGINS
from .errors import PluginError
from .markers import PROJECT

ENTRY_POINT_GROUP = "ttsadapt.plugins"
DISABLE_AUTOLOAD_ENV = "TTSADAPT_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    origin: str  # "builtin", "entrypoint" or "cli"
    distribution: str
    version: str
    error: str | None = None  # why it could not be used (only with ``tolerate_broken``)

    @property
    def broken(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class DisabledPlugin:
    """A plugin blocked by ``-p no:NAME``: where it would have come from (never imported here)."""

    name: str
    source: str  # module name, or an entry point's ``module:attr`` value
    origin: str  # "builtin", "entrypoint" or "cli"
    entry_point: importlib_metadata.EntryPoint | None = None

    def load(self):
        """Import the plugin object (only to say which components it would provide)."""
        if self.entry_point is not None:
            return self.entry_point.load()
        return importlib.import_module(self.source)


def short_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def _import_plugin(module_name: str, plugin_name: str):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # any import failure is reported loudly
        tb = traceback.format_exc(limit=-3)
        raise PluginError(
            f"plugin '{plugin_name}' (module {module_name}) failed to import: "
            f"{type(exc).__name__}: {exc}\n{tb}"
            f"Fix or uninstall it, or skip it with `-p no:{plugin_name}`."
        ) from exc


def _is_new(
    pm: pluggy.PluginManager, plugin: Any, name: str, info: PluginInfo, infos: list[PluginInfo]
) -> bool:
    """Whether ``plugin`` is not registered yet: a module object already registered under
    another name is a warning (it is loaded once), a second plugin named ``name`` an error."""
    other = pm.get_name(plugin)
    if other is not None:  # the same module object, already registered under ``other``
        first = next((i for i in infos if i.name == other), None)
        where = f"plugin '{other}'" + (
            f" ({first.origin}, distribution {first.distribution} {first.version})" if first else ""
        )
        warnings.warn(
            f"-p {info.module}: this module is already loaded as {where}; it is loaded once "
            f"(drop -p {info.module}, or disable the installed one with -p no:{other})",
            stacklevel=4,
        )
        return False
    existing = pm.get_plugin(name)
    if existing is not None:
        first = next((i for i in infos if i.name == name), None)
        raise PluginError(
            f"two plugins are named '{name}': {info.origin} {info.module}"
            f"{f' (distribution {info.distribution})' if info.origin == 'entrypoint' else ''}"
            f" and the already registered {first.origin + ' ' + first.module if first else '?'}"
            f"{f' (distribution {first.distribution})' if first else ''}; rename one, or "
            f"disable one with -p no:{name}"
        )
    return True


def _entry_point_plugins(
    disabled: set[str], blocked: dict[str, DisabledPlugin]
) -> Iterator[tuple[PluginInfo, Any, PluginError | None]]:
    """The installed plugins (entry points), each imported when the caller asks for the next:
    its description and module, or the error naming it when it fails to import. A disabled one
    is only noted in ``blocked``."""
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist else "?"
        dist_version = ep.dist.version if ep.dist else "?"
        if ep.name in disabled:
            blocked.setdefault(ep.name, DisabledPlugin(ep.name, ep.value, "entrypoint", ep))
            continue
        info = PluginInfo(ep.name, ep.value, "entrypoint", dist_name, dist_version)
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001
            error = PluginError(
                f"plugin '{ep.name}' (entry point {ep.value} from distribution "
                f"{dist_name}) failed to import: {type(exc).__name__}: {exc}. "
                f"Fix or uninstall it, or skip it with `-p no:{ep.name}`."
            )
            error.__context__ = exc  # raised later: keep the import failure's traceback
            yield info, None, error
            continue
        yield info, plugin, None


def create_plugin_manager(
    disabled: Iterable[str] = (),
    extra_modules: Iterable[str] = (),
    autoload: bool | None = None,
    tolerate_broken: bool = False,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Return the plugin manager and a description of every plugin registered.

    :param disabled: plugin names to block (``-p no:NAME``).
    :param extra_modules: modules to load as plugins (``-p MODULE``).
    :param autoload: load entry points; default: unless ``TTSADAPT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param tolerate_broken: a plugin that fails to import is listed (``PluginInfo.error``) instead
        of raising :class:`PluginError`; for ``ttsadapt plugins`` only.

    The blocked plugins' sources are on ``pm.ttsadapt_disabled`` (name -> :class:`DisabledPlugin`).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(disabled)
    for name in disabled:
        pm.set_blocked(name)
    infos: list[PluginInfo] = []
    blocked: dict[str, DisabledPlugin] = {}
    pm.ttsadapt_disabled = blocked  # type: ignore[attr-defined]

    def register(plugin, name: str, info: PluginInfo) -> None:
        if _is_new(pm, plugin, name, info, infos):
            pm.register(plugin, name=name)
            infos.append(info)

    def broken(info: PluginInfo, exc: PluginError) -> None:
        if not tolerate_broken:
            raise exc
        infos.append(
            PluginInfo(
                info.name,
                info.module,
                info.origin,
                info.distribution,
                info.version,
                error=str(exc).splitlines()[0],
            )
        )

    def register_module(module_name: str, origin: str, dist: str, version: str) -> None:
        name = short_name(module_name)
        if name in disabled:
            blocked.setdefault(name, DisabledPlugin(name, module_name, origin))
            return
        info = PluginInfo(name, module_name, origin, dist, version)
        try:
            plugin = _import_plugin(module_name, name)
        except PluginError as exc:
            broken(info, exc)
            return
        register(plugin, name, info)

    for module_name in BUILTIN_PLUGINS:
        register_module(module_name, "builtin", "ttsadapt", __version__)

    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        for info, plugin, error in _entry_point_plugins(disabled, blocked):
            if error is not None:
                broken(info, error)
            else:
                register(plugin, info.name, info)

    for module_name in extra_modules:
        register_module(module_name, "cli", "-", "-")

    _check_hooks(pm)
    return pm, infos


def _check_hooks(pm: pluggy.PluginManager) -> None:
    """Every hook a plugin implements is one of ours: name the plugin of an unknown one."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        culprit = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else "?"
        raise PluginError(f"plugin '{culprit}' implements an unknown hook: {exc}") from exc
