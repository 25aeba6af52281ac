"""ttsadapt: an open benchmark for adapting text-to-speech models.

The host (this package) discovers pluggy plugins that provide backbones, adaptation methods,
metrics and data filters, runs benchmark suites, and writes comparable leaderboards.
"""

__version__ = "0.1.0"
