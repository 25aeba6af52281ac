"""The pluggy markers. Plugins decorate their hook functions with :data:`hookimpl`."""

import pluggy

PROJECT = "ttsadapt"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
