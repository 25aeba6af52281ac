"""Exceptions a user sees. Each message names the file, field or component and what was expected."""

from __future__ import annotations


class TTSAdaptError(Exception):
    """Base class for errors that the CLI turns into one clear line and a non-zero exit."""

    exit_code = 1


class ConfigError(TTSAdaptError):
    """A suite or parameter file is invalid (exit code 2)."""

    exit_code = 2


class PluginError(TTSAdaptError):
    """A plugin failed to import, registered a duplicate name, or broke its contract."""

    exit_code = 3


class UnknownComponentError(ConfigError):
    """A suite names a component that no plugin registers."""


class DataError(TTSAdaptError):
    """A manifest or audio file cannot be used."""

    exit_code = 4


class ItemError(Exception):
    """One evaluation or training item cannot be processed; the batch continues.

    Metrics raise (or record) this per item; the message is the reason stored in the error row.
    """
