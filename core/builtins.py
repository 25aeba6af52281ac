"""The built-in plugins: ordinary plugin modules, registered from this tuple (pytest's model).

The core names no plugin anywhere else. Each module defines ``@hookimpl`` registration functions.
A user disables one with ``-p no:NAME`` where NAME is the module's last component.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    # backbones
    # methods
    # metrics
    # filters
)
