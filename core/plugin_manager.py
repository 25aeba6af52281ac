"""Builds the pluggy PluginManager: specs, built-ins, the ``ttsadapt.plugins`` entry points.

User control: ``TTSADAPT_DISABLE_PLUGIN_AUTOLOAD=1`` stops entry-point autoload (built-ins stay),
``-p no:NAME`` (``disabled=[NAME]``) blocks a plugin by name, ``-p MODULE`` loads a module as a
plugin. A plugin that fails to import is a :class:`PluginError` naming it, never a quiet log line.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

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


def short_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def _import_plugin(module_name: str, plugin_name: str):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported loudly
        tb = traceback.format_exc(limit=-3)
        raise PluginError(
            f"plugin '{plugin_name}' (module {module_name}) failed to import: "
            f"{type(exc).__name__}: {exc}\n{tb}"
            f"Fix or uninstall it, or skip it with `-p no:{plugin_name}`."
        ) from exc


def create_plugin_manager(
    disabled: Iterable[str] = (),
    extra_modules: Iterable[str] = (),
    autoload: bool | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Return the plugin manager and a description of every plugin registered.

    :param disabled: plugin names to block (``-p no:NAME``).
    :param extra_modules: modules to load as plugins (``-p MODULE``).
    :param autoload: load entry points; default: unless ``TTSADAPT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(disabled)
    for name in disabled:
        pm.set_blocked(name)
    infos: list[PluginInfo] = []

    def register_module(module_name: str, origin: str, dist: str, version: str) -> None:
        name = short_name(module_name)
        if name not in disabled:
            pm.register(_import_plugin(module_name, name), name=name)
            infos.append(PluginInfo(name, module_name, origin, dist, version))

    for module_name in BUILTIN_PLUGINS:
        register_module(module_name, "builtin", "ttsadapt", __version__)

    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled or pm.get_plugin(ep.name) is not None:
                if pm.get_plugin(ep.name) is not None and ep.name not in disabled:
                    raise PluginError(
                        f"two plugins are named '{ep.name}' (entry point {ep.value} and an "
                        f"already registered plugin); rename one or disable it with -p no:{ep.name}"
                    )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                dist = ep.dist.name if ep.dist else "?"
                raise PluginError(
                    f"plugin '{ep.name}' (entry point {ep.value} from distribution {dist}) "
                    f"failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall it, or skip it with `-p no:{ep.name}`."
                ) from exc
            pm.register(plugin, name=ep.name)
            dist_name = ep.dist.name if ep.dist else "?"
            dist_version = ep.dist.version if ep.dist else "?"
            infos.append(PluginInfo(ep.name, ep.value, "entrypoint", dist_name, dist_version))

    for module_name in extra_modules:
        register_module(module_name, "cli", "-", "-")

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else "?"
        raise PluginError(f"plugin '{name}' implements an unknown hook: {exc}") from exc
    return pm, infos
