"""The common ``adapt`` of supervised methods: choose trainable weights, train, keep the artefacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from ..components import AdaptResult, Backbone, Method, RunContext, TrainingData
from ..errors import ConfigError
from .config import TrainingParams


def freeze_prefixes(module: Any, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on every parameter under one of ``prefixes``; returns the count."""
    frozen = 0
    for name, param in module.named_parameters():
        if any(name == p or name.startswith(p.rstrip(".") + ".") for p in prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


class SupervisedMethod(Method):
    """Base of ``lora``, ``lm_lora`` and ``full_ft``: subclasses implement :meth:`configure`."""

    Params: ClassVar[type[TrainingParams]] = TrainingParams
    params: TrainingParams

    def configure(self, backbone: Backbone, ctx: RunContext) -> None:
        """Make exactly the parameters this method trains require grad."""
        raise NotImplementedError

    def save_artifacts(self, backbone: Backbone, folder: Path, ctx: RunContext) -> int:
        """Save the trained weights (ttsadapt format) and the upstream export; returns bytes."""
        from .adapters import adapter_size_bytes, lora_config_of
        from .checkpoint import save_trainable

        folder.mkdir(parents=True, exist_ok=True)
        if lora_config_of(backbone.module) is not None:
            backbone.save_adapter(folder)
        else:
            save_trainable(backbone.module, folder / "trainable.safetensors")
        size = adapter_size_bytes(folder)
        try:
            backbone.export_adapter(folder / "upstream")
        except (NotImplementedError, ConfigError) as exc:
            ctx.logger.warning(
                "no upstream export of %s weights for backbone '%s': %s",
                self.name,
                backbone.name,
                exc or "not implemented",
            )
        return size

    def adapt(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> AdaptResult:
        if backbone.module is None:
            raise ConfigError(f"backbone '{backbone.name}' is not loaded: call load(device) first")
        if not data.train:
            raise ConfigError(f"method '{self.name}' needs training data; the train split is empty")
        from .loop import Trainer
        from .seeding import seed_everything

        seed_everything(ctx.seed)  # adapter initialisation is part of the seeded run
        self.configure(backbone, ctx)
        total, trainable = backbone.parameter_counts()
        ctx.logger.info(
            "%s on %s: %d of %d parameters trainable (%.3f %%)",
            self.name,
            backbone.name,
            trainable,
            total,
            100.0 * trainable / max(total, 1),
        )
        t0 = time.perf_counter()
        train_examples = backbone.prepare(data.train)
        val_examples = backbone.prepare(data.validation) if data.validation else []
        prepare_s = time.perf_counter() - t0
        outcome = Trainer(backbone, train_examples, val_examples, self.params, ctx).fit()
        adapter_bytes = self.save_artifacts(backbone, Path(ctx.run_dir) / "adapter", ctx)
        stats = dict(outcome.stats, prepare_s=round(prepare_s, 3))
        stats["n_train_examples"] = len(train_examples)
        stats["n_val_examples"] = len(val_examples)
        return AdaptResult(
            trainable_params=trainable,
            total_params=total,
            adapter_bytes=adapter_bytes,
            curves=outcome.curves,
            checkpoints=outcome.checkpoints,
            selected=outcome.selected,
            stats=stats,
        )
