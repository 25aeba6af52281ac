"""The built-in plugins: ordinary plugin modules, registered from this tuple (pytest's model).

The core names no plugin anywhere else. Each module defines ``@hookimpl`` registration functions.
A user disables one with ``-p no:NAME`` where NAME is the module's last component.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    # backbones
    "ttsadapt.plugins.backbones.kokoro",
    "ttsadapt.plugins.backbones.neutts",
    "ttsadapt.plugins.backbones.voxcpm2",
    # methods
    "ttsadapt.plugins.methods.zero_shot",
    "ttsadapt.plugins.methods.lora",
    "ttsadapt.plugins.methods.lm_lora",
    "ttsadapt.plugins.methods.full_ft",
    "ttsadapt.plugins.methods.grpo",
    "ttsadapt.plugins.methods.dpo",
    # metrics
    "ttsadapt.plugins.metrics.dnsmos",
    "ttsadapt.plugins.metrics.wada_snr",
    "ttsadapt.plugins.metrics.speaker_similarity",
    "ttsadapt.plugins.metrics.cer",
    "ttsadapt.plugins.metrics.pesq",
    "ttsadapt.plugins.metrics.stoi",
    # filters
    "ttsadapt.plugins.filters.duration",
    "ttsadapt.plugins.filters.max_tokens",
    "ttsadapt.plugins.filters.min_wada_snr",
    "ttsadapt.plugins.filters.min_dnsmos",
    "ttsadapt.plugins.filters.speaker_energy_std",
    "ttsadapt.plugins.filters.speaker_dnsmos_std",
    "ttsadapt.plugins.filters.asr_cer",
)
