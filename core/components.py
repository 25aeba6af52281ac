"""Base classes of the four component kinds, and their plain-data metadata.

A plugin's registration hook returns *classes* deriving from these; nothing heavy happens until the
runner instantiates one and calls ``setup``/``load``. Every class carries ``name``, ``version``
(bump it whenever the numbers it produces change) and a pydantic ``Params`` model whose defaults
fill in a suite's omissions, so a run's id is a hash of fully resolved parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Strict

from .types import Clip, EvalItem, ItemScore, SynthesisRequest

KINDS = ("backbone", "method", "metric", "filter")

# What one run asks a cluster for (``ttsadapt run --executor ray``): ``num_cpus``, ``num_gpus``
# (GPUs per run; more than one means one run on several GPUs) and ``memory_gb`` (host memory
# reserved for the run; ``None`` reserves none). A run asks for the larger of its backbone's and
# its method's value of each key; a suite's ``[resources]`` table overrides both.
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory_gb")


class Params(BaseModel):
    """Base for component parameter models: unknown keys are an error, values are validated.

    Booleans and numbers are strict: a field declared ``bool`` (or ``bool | None``) takes only
    ``true``/``false``, never the string ``"yes"``; a field declared ``int`` or ``float`` (or
    either ``| None``) takes only a number, never a string, a boolean or a list. An ``int`` still
    goes into a ``float`` field (TOML's ``lr = 1`` is 1.0). Other fields (``str``, ``Literal``,
    paths, lists) keep pydantic's usual validation. Command lines that read values from text turn
    them into typed values first (``--metric-params`` reads ``true``, ``0.5`` and JSON lists).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for info in cls.__pydantic_fields__.values():
            if _strict_scalar(info.annotation) and not any(
                isinstance(m, Strict) for m in info.metadata
            ):
                info.metadata.append(Strict())
                changed = True
        if changed:
            cls.model_rebuild(force=True)


def _strict_scalar(annotation: Any) -> bool:
    """True for ``bool``, ``int``, ``float``, ``int | float`` and each of them ``| None``."""
    if annotation in (bool, int, float):
        return True
    if get_origin(annotation) in (Union, UnionType):
        args = {a for a in get_args(annotation) if a is not type(None)}
        return bool(args) and (args == {bool} or args <= {int, float})
    return False


class Component:
    """Common shape of every component class."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Params

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    @classmethod
    def resolve_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Validate ``params`` and return them with every default filled in (JSON-able)."""
        return cls.Params(**params).model_dump(mode="json")

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        """Plain-data description shown by ``ttsadapt ls`` and stored in records."""
        meta = {
            "kind": cls.kind,
            "name": cls.name,
            "version": cls.version,
            "description": cls.description,
            "params": {
                k: (None if f.is_required() else f.get_default(call_default_factory=True))
                for k, f in cls.Params.model_fields.items()
            },
        }
        resources = getattr(cls, "resources", None)
        if resources is not None:  # backbones and methods: what one run asks a cluster for
            meta["resources"] = dict(resources)
        return meta


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricOutput:
    """One number a metric produces per item. The first output of a metric is its headline."""

    name: str
    higher_is_better: bool | None  # None: no direction (no arrow, no rank, not in the mean rank)
    range: tuple[float, float]
    unit: str = ""
    description: str = ""


def direction_arrow(higher_is_better: Any) -> str:
    """``↑`` higher is better, ``↓`` lower is better, ``""`` for an output without a direction."""
    if higher_is_better is None or higher_is_better != higher_is_better:  # None or NaN
        return ""
    return "↑" if higher_is_better else "↓"


def has_direction(higher_is_better: Any) -> bool:
    return not (higher_is_better is None or higher_is_better != higher_is_better)


class Metric(Component):
    """Scores batches of :class:`EvalItem`. Loads its model once in :meth:`setup`.

    ``score`` returns one :class:`ItemScore` per item, in order. A bad item gets an ``error`` (its
    reason) instead of values; it never raises for one bad item.
    """

    kind: ClassVar[str] = "metric"
    outputs: ClassVar[tuple[MetricOutput, ...]] = ()
    needs_text: ClassVar[bool] = False
    needs_reference_audio: ClassVar[bool] = False
    needs_speaker_prompt: ClassVar[bool] = False
    sample_rate: ClassVar[int | None] = None  # rate the metric works at; None = any

    def setup(self) -> None:
        """Load models (called once per process before the first ``score``)."""

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        raise NotImplementedError

    def model_provenance(self) -> dict[str, Any]:
        """What the numbers come from beyond ``version`` and ``params``: ``{"packages":
        {distribution: version}, "files": {name: sha256}}`` for the packages that ship the
        metric's models and code and its weight files (more keys allowed, JSON-able). Stored in
        every record and part of the score cache key, so a new wheel or weight file misses old
        cached scores. Called before ``setup``; must not load models and should be cheap when
        called again (cache it). Default: nothing beyond the metric's own code."""
        return {"packages": {}, "files": {}}

    @classmethod
    def headline(cls) -> MetricOutput:
        return cls.outputs[0]

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        meta = super().metadata()
        meta.update(
            higher_is_better=cls.outputs[0].higher_is_better if cls.outputs else None,
            range=list(cls.outputs[0].range) if cls.outputs else None,
            outputs=[
                {
                    "name": o.name,
                    "higher_is_better": o.higher_is_better,
                    "range": list(o.range),
                    "unit": o.unit,
                    "description": o.description,
                }
                for o in cls.outputs
            ],
            needs_text=cls.needs_text,
            needs_reference_audio=cls.needs_reference_audio,
            needs_speaker_prompt=cls.needs_speaker_prompt,
            sample_rate=cls.sample_rate,
        )
        return meta


# --------------------------------------------------------------------------- backbones


class Backbone(Component):
    """A TTS model that can be adapted, trained on a batch and made to speak.

    Lifecycle: ``__init__(**params)`` (cheap) → ``load(device)`` → training via a Method →
    ``synthesize``. ``module`` is the ``torch.nn.Module`` that methods wrap (PEFT etc.).
    """

    kind: ClassVar[str] = "backbone"
    sample_rate: ClassVar[int] = 16000  # rate of synthesised audio
    # see RESOURCE_KEYS; the GPU is asked for only where the run may use one (device auto on a
    # cluster with GPUs, or cuda), so the same suite also runs on a CPU-only cluster
    resources: ClassVar[dict[str, float | None]] = {
        "num_cpus": 1,
        "num_gpus": 1,
        "memory_gb": None,
    }
    scopes: ClassVar[tuple[str, ...]] = ("lm", "decoder", "all")

    module: Any = None

    def load(self, device: str = "cpu") -> None:
        raise NotImplementedError

    def target_modules(self, scope: str) -> list[str]:
        """Names of the linear layers an adapter targets for ``scope`` (``lm``/``decoder``/``all``)."""
        raise NotImplementedError

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) parameters of ``module``."""
        total = sum(p.numel() for p in self.module.parameters())
        trainable = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        return total, trainable

    def prepare(self, clips: Sequence[Clip]) -> list[Any]:
        """Turn clips into training examples (features/codes); called once per data split."""
        raise NotImplementedError

    def collate(self, examples: Sequence[Any]) -> Any:
        """Batch examples for :meth:`loss`."""
        raise NotImplementedError

    def loss(self, batch: Any) -> dict[str, Any]:
        """Training loss on a batch: ``{"loss": total, <part>: tensor, ...}``."""
        raise NotImplementedError

    def synthesize(
        self, requests: Sequence[SynthesisRequest], settings: dict[str, Any] | None = None
    ) -> list[np.ndarray]:
        """Speak each request; mono float32 at ``sample_rate``."""
        raise NotImplementedError

    def save_adapter(self, path: Path) -> None:
        raise NotImplementedError

    def load_adapter(self, path: Path) -> None:
        raise NotImplementedError

    def export_adapter(self, path: Path) -> None:
        """Write the adapter in the upstream model's own format."""
        raise NotImplementedError


# --------------------------------------------------------------------------- methods


@dataclass
class CheckpointInfo:
    step: int
    path: str
    val_loss: float | None = None
    dev_score: float | None = None


@dataclass
class AdaptResult:
    """What a method hands back to the runner after adapting a backbone in place."""

    trainable_params: int
    total_params: int
    adapter_bytes: int = 0
    curves: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    selected: dict[str, int | None] = field(default_factory=dict)  # {"by_val_loss": step, ...}
    stats: dict[str, Any] = field(default_factory=dict)  # peak memory, steps/s, ...


@dataclass
class RunContext:
    """Everything a method may use while adapting: its folder, seed, device, log and progress."""

    run_dir: Path
    seed: int
    device: str
    logger: logging.Logger
    progress: Callable[..., Any]  # progress(total=, desc=) -> tqdm-like
    dev_score: Callable[[Backbone], float] | None = None  # perceptual score on a small dev set
    dev_metric: str | None = None
    # Training curves to experiment trackers (Accelerate's integration): None = TensorBoard when
    # installed (offline, ``<run_dir>/tensorboard/``); a list chooses ("tensorboard", "wandb",
    # "mlflow"), () turns tracking off. Not a run parameter: it never changes a run's id.
    trackers: Sequence[str] | None = None
    tracker_project: str = "ttsadapt"  # W&B project / MLflow experiment (e.g. the suite's name)
    # the plugin manager's hook relay (``registry.pm.hook``): training-step observers
    hooks: Any = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"


@dataclass
class TrainingData:
    train: list[Clip]
    validation: list[Clip]


class Method(Component):
    """Adapts a loaded backbone in place on training data; the zero-shot anchor is a Method too."""

    kind: ClassVar[str] = "method"
    trains: ClassVar[bool] = True  # False for the zero-shot anchor: it needs no data recipe
    # what the method needs beyond its backbone's ``resources`` (e.g. full fine-tuning: more
    # memory); empty: the backbone's declaration holds
    resources: ClassVar[dict[str, float | None]] = {}

    def adapt(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> AdaptResult:
        raise NotImplementedError


# --------------------------------------------------------------------------- data filters


@dataclass
class FilterResult:
    kept: list[Clip]
    dropped: list[tuple[Clip, str]]  # (clip, reason)


class DataFilter(Component):
    """Removes clips from training data; every dropped clip comes back with its reason.

    ``level`` is ``"clip"`` (each clip judged alone) or ``"speaker"`` (a speaker's clips together).
    ``context`` may hold ``token_count`` (callable text -> int, from the backbone's tokenizer).
    """

    kind: ClassVar[str] = "filter"
    level: ClassVar[str] = "clip"

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        raise NotImplementedError


BASES: dict[str, type[Component]] = {
    "backbone": Backbone,
    "method": Method,
    "metric": Metric,
    "filter": DataFilter,
}
