"""Suites: declarative TOML files in ``benchmarks/``, validated, expanded into runs.

A suite names its corpus, data recipes, backbones, methods (a list-valued parameter is a sweep:
``rank = [8, 16, 32]`` makes three runs; write ``[[1, 2]]`` for one run whose value is a list),
metrics, seeds, evaluation set, and the zero-shot anchor every leaderboard compares against.
A run's id is a hash of its fully resolved config, so editing a default or bumping a component's
version makes new runs instead of silently reusing old ones.

A ``[synthesis]`` table evaluates each adapted checkpoint several ways: its list-valued keys are a
sweep of decoding settings (``temperature = [0.7, 1.0]``), each backbone validates them
(``Backbone.resolve_synthesis``). A run is then a training identity × one synthesis setting: its
``train_id`` hashes what training depends on (backbone, method, data, seed: what the run id hashes
without a ``[synthesis]`` table) and its ``run_id`` adds the setting, so adding a setting makes new
runs that reuse the trained adapter (``results/<suite>/trained/<train_id>/``) instead of retraining.
A suite without a ``[synthesis]`` table plans exactly the run ids it always did.

A method table's ``after`` chains runs inside a suite: ``after = "lora"`` starts each of the
method's runs from the trained weights of the ``lora`` run on the same backbone, data recipe, seed
(and synthesis setting); when ``lora`` is swept, ``after = "lora(rank=4)"`` picks one setting,
written as labels write it (``key=value`` pairs of the source's parameters, comma-separated). The
method must take an ``init_run`` parameter (``grpo``, ``dpo``); the runner passes it the source
run's folder. The source's ``train_id`` is part of the dependent run's identity (retraining the source
makes new dependent runs), runs are planned sources first, and the dependent run's label says where
it started (``grpo after lora(rank=4)``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .components import Component, Method
from .errors import ConfigError
from .registry import Registry

DEFAULT_ANCHOR = "zero_shot"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(_Strict):
    name: str = Field(description="registered component name (see `ttsadapt ls`)")
    params: dict[str, Any] = Field(default_factory=dict)


class MethodSpec(ComponentSpec):
    data: list[str] | None = Field(
        None,
        description="names of the [[data]] recipes this method trains on (default: every recipe)",
        min_length=1,
    )
    after: str | None = Field(
        None,
        description="start from the trained weights of another [[methods]] entry of this suite "
        '(same backbone, data recipe and seed): its method name ("lora"), or one setting of a '
        'sweep as labels write it ("lora(rank=4)"); the method needs an `init_run` parameter',
        min_length=1,
    )


class CorpusSection(BaseModel):
    """Where the clips come from: ``manifest = "path.jsonl"`` (relative to the suite file) or
    ``builder = "offline"`` plus the builder's own fields (see ``ttsadapt data build --help``)."""

    model_config = ConfigDict(extra="allow")
    manifest: str | None = None
    builder: str | None = None


class EvaluationSection(_Strict):
    split: str = Field("eval", description="manifest split holding the evaluation utterances")
    speakers: list[str] | None = Field(None, description="only these speakers (default: all)")
    match_recipe_speakers: bool = Field(
        False,
        description="evaluate a run that trains on a recipe with `speakers` only on those "
        "speakers' evaluation clips (the anchor keeps the whole set; the leaderboard pairs "
        "utterances by id, so deltas stay paired)",
    )
    max_items: int | None = Field(None, ge=1, description="cap on evaluation utterances")
    dev_items: int = Field(4, ge=0, description="validation utterances for checkpoint selection")
    dev_metric: str | None = Field(None, description="metric for perceptual checkpoint selection")
    batch_size: int = Field(8, ge=1)


class ResourcesSection(_Strict):
    """What each run of the suite asks a cluster for (``--executor ray``), overriding what its
    backbone and method declare (their ``resources``). Not part of any run's identity.
    ``num_cpus``, when set, is also the number of torch threads every run computes with under
    any executor (a run's audio depends on it at float level; each record names the count)."""

    num_cpus: float | None = Field(
        None, ge=0, description="CPUs per run; set, also torch's thread count in every run"
    )
    num_gpus: float | None = Field(None, ge=0, description="GPUs per run (>1: one run, many GPUs)")
    memory_gb: float | None = Field(None, ge=0, description="host memory reserved per run (GB)")


class TrackingSection(_Strict):
    """Where training curves go besides ``curves.jsonl`` (Accelerate's tracker integration). Not
    part of any run's identity."""

    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] | None = Field(
        None, description="None: TensorBoard when installed; [] turns tracking off"
    )
    project: str | None = Field(
        None, description="W&B project / MLflow experiment (default: suite)"
    )


class SuiteFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = "1"
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    anchor: str = DEFAULT_ANCHOR
    device: str = "auto"
    corpus: CorpusSection
    data: list[dict[str, Any]] = Field(default_factory=list)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    backbones: list[ComponentSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    metrics: list[ComponentSpec] = Field(min_length=1)
    resources: ResourcesSection | None = None
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    synthesis: dict[str, Any] = Field(
        default_factory=dict,
        description="decoding settings each run is evaluated with; a list-valued key is a sweep "
        "(the same trained checkpoint, synthesised once per value)",
    )

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v


@dataclass
class Run:
    """One planned run: backbone × method(params) × data recipe × seed."""

    run_id: str
    suite: str
    suite_version: str
    backbone: str
    backbone_version: str
    backbone_params: dict[str, Any]
    method: str
    method_version: str
    method_params: dict[str, Any]
    is_anchor: bool
    data_recipe: str | None
    recipe: dict[str, Any] | None
    seed: int
    metrics: list[dict[str, Any]] = field(default_factory=list)  # name, version, params
    swept: tuple[str, ...] = ()  # parameter names that vary across the suite (shown in labels)
    # the [synthesis] setting this run is evaluated with ({}: the backbone's own defaults)
    synthesis: dict[str, Any] = field(default_factory=dict)
    # what training depends on, hashed: runs differing only in their synthesis setting share it
    # (and their trained adapter); equal to run_id for a suite without a [synthesis] table
    train_id: str = ""
    # the run this one starts from (a method's ``after``): {run_id, train_id, label, system}; the
    # label is the source's method part ("lora(rank=4)"), the system its identity without seeds
    after: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "backbone": self.backbone,
            "backbone_version": self.backbone_version,
            "backbone_params": self.backbone_params,
            "method": self.method,
            "method_version": self.method_version,
            "method_params": self.method_params,
            "is_anchor": self.is_anchor,
            "data_recipe": self.data_recipe,
            "recipe": self.recipe,
            "seed": self.seed,
            "metrics": self.metrics,
            "synthesis_settings": self.synthesis,
            "train_id": self.train_id or self.run_id,
        }
        if self.after:  # only chained runs say so: other runs' files are as they always were
            out["after"] = self.after
        return out

    def label(self) -> str:
        shown = {**self.backbone_params, **self.method_params}
        params = ",".join(f"{k}={shown[k]}" for k in self.swept if k in shown)
        method = f"{self.method}({params})" if params else self.method
        if self.after:
            method += f" after {self.after['label']}"
        data = f" on {self.data_recipe}" if self.data_recipe else ""
        setting = f" · {synthesis_text(self.synthesis)}" if self.synthesis else ""
        return f"{self.backbone} · {method}{data}{setting} · seed {self.seed}"


def synthesis_text(settings: dict[str, Any]) -> str:
    """``temperature=0.7, top_k=20``: a synthesis setting as labels show it (keys sorted)."""
    return ", ".join(f"{k}={settings[k]}" for k in sorted(settings))


@dataclass
class Suite:
    """A validated suite: the parsed file, its path, and the planned runs."""

    path: Path
    spec: SuiteFile
    runs: list[Run]
    raw: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def root(self) -> Path:
        return self.path.parent


def canonical_hash(obj: Any, length: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def expand_sweep(params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """All combinations of list-valued params (in key order), and the swept keys."""
    keys = sorted(params)
    # a list of one list is one literal list value (`targets = [["q", "k"]]`), not a sweep
    swept = [
        k
        for k in keys
        if isinstance(params[k], list)
        and not (len(params[k]) == 1 and isinstance(params[k][0], list))
    ]
    axes = [params[k] if k in swept else [params[k]] for k in keys]
    if any(len(a) == 0 for a in axes):
        empty = [k for k, a in zip(keys, axes) if len(a) == 0]
        raise ValueError(f"sweep over {empty[0]!r} is empty")
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)], swept


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_message(path: Path, prefix: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = _fmt_loc((prefix, *err["loc"]) if prefix else err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required field is missing"
    got = err.get("input")
    got_s = "" if err["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
    more = f" (+{len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{path}: field {where}: {msg}{got_s}{more}"


def _resolve_component(
    registry: Registry, kind: str, spec: ComponentSpec, path: Path, where: str
) -> list[tuple[type[Component], dict[str, Any], list[str]]]:
    try:
        cls = registry.get(kind, spec.name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: field {where}.name: {exc}") from None
    try:
        combos, swept = expand_sweep(spec.params)
    except ValueError as exc:
        raise ConfigError(f"{path}: field {where}.params: {exc}") from None
    out = []
    for combo in combos:
        # a list of one list is a literal list value, not a sweep
        combo = {
            k: (v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list) else v)
            for k, v in combo.items()
        }
        try:
            resolved = cls.resolve_params(combo)
        except ValidationError as exc:
            raise ConfigError(_validation_message(path, f"{where}.params", exc)) from None
        out.append((cls, resolved, swept))
    return out


def load_suite(path: Path | str, registry: Registry) -> Suite:
    """Parse, validate and expand a suite file. Raises :class:`ConfigError` with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: suite file not found")
    raw = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    try:
        spec = SuiteFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(path, "", exc)) from None
    return Suite(path=path, spec=spec, runs=plan_runs(path, spec, registry), raw=raw)


def _validate_recipes(path: Path, spec: SuiteFile, registry: Registry) -> list[Any]:
    from .data.recipes import Recipe

    recipes = []
    names = set()
    for i, table in enumerate(spec.data):
        try:
            recipe = Recipe.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(_validation_message(path, f"data[{i}]", exc)) from None
        if recipe.name in names:
            raise ConfigError(
                f"{path}: field data[{i}].name: duplicate recipe name {recipe.name!r}"
            )
        names.add(recipe.name)
        for j, flt in enumerate(recipe.filters):
            fname = flt.get("name") if isinstance(flt, dict) else None
            if not fname:
                raise ConfigError(
                    f"{path}: field data[{i}].filters[{j}]: expected a table with `name`"
                )
            try:
                fcls = registry.get("filter", fname)
            except ConfigError as exc:
                raise ConfigError(f"{path}: field data[{i}].filters[{j}].name: {exc}") from None
            try:
                fcls.resolve_params({k: v for k, v in flt.items() if k != "name"})
            except ValidationError as exc:
                raise ConfigError(
                    _validation_message(path, f"data[{i}].filters[{j}]", exc)
                ) from None
        recipes.append(recipe)
    return recipes


def _validate_corpus(path: Path, spec: SuiteFile) -> None:
    corpus = spec.corpus
    if bool(corpus.manifest) == bool(corpus.builder):
        raise ConfigError(
            f'{path}: field corpus: expected exactly one of `manifest = "file.jsonl"` or '
            f'`builder = "offline"`'
        )
    if corpus.manifest:
        extra = sorted(set(corpus.model_dump(exclude_none=True)) - {"manifest"})
        if extra:
            raise ConfigError(f"{path}: field corpus.{extra[0]}: unknown key next to `manifest`")
        return
    from .data.corpus import CorpusSpec

    try:
        CorpusSpec.model_validate(corpus.model_dump(exclude_none=True))
    except ValidationError as exc:
        raise ConfigError(_validation_message(path, "corpus", exc)) from None


def _resolve_metrics(path: Path, spec: SuiteFile, registry: Registry) -> list[dict[str, Any]]:
    """The suite's metrics as runs record them (name, version, params); checks ``dev_metric``."""
    metrics = []
    seen_metrics = set()
    for i, mspec in enumerate(spec.metrics):
        resolved = _resolve_component(registry, "metric", mspec, path, f"metrics[{i}]")
        if len(resolved) != 1:
            raise ConfigError(f"{path}: field metrics[{i}].params: metrics cannot be swept")
        cls, params, _ = resolved[0]
        if cls.name in seen_metrics:
            raise ConfigError(f"{path}: field metrics[{i}].name: metric {cls.name!r} listed twice")
        seen_metrics.add(cls.name)
        metrics.append({"name": cls.name, "version": cls.version, "params": params})
    if spec.evaluation.dev_metric and spec.evaluation.dev_metric not in seen_metrics:
        raise ConfigError(
            f"{path}: field evaluation.dev_metric: {spec.evaluation.dev_metric!r} is not one of the "
            f"suite's metrics ({', '.join(sorted(seen_metrics))})"
        )
    return metrics


def plan_runs(path: Path, spec: SuiteFile, registry: Registry) -> list[Run]:
    _validate_corpus(path, spec)
    recipes = _validate_recipes(path, spec, registry)
    metrics = _resolve_metrics(path, spec, registry)
    method_names = [m.name for m in spec.methods]
    if spec.anchor not in method_names:
        raise ConfigError(
            f"{path}: field anchor: the anchor method {spec.anchor!r} must be listed in [[methods]] "
            f"(listed: {', '.join(method_names)})"
        )
    backbones = [
        r
        for i, b in enumerate(spec.backbones)
        for r in _resolve_component(registry, "backbone", b, path, f"backbones[{i}]")
    ]
    recipe_names = [r.name for r in recipes]
    for i, m in enumerate(spec.methods):
        unknown = sorted(set(m.data or ()) - set(recipe_names))
        if unknown:
            raise ConfigError(
                f"{path}: field methods[{i}].data: no [[data]] recipe named {unknown[0]!r} "
                f"(recipes: {', '.join(recipe_names) or 'none'})"
            )
    by_entry = [
        _resolve_component(registry, "method", m, path, f"methods[{i}]")
        for i, m in enumerate(spec.methods)
    ]
    chains = _resolve_chains(path, spec, by_entry)
    methods = [  # sources before the runs that start from them (else in the file's order)
        (*r, spec.methods[i].data, chains[i])
        for i in _chain_order(path, chains)
        for r in by_entry[i]
    ]
    settings_by_backbone = [
        _resolve_synthesis(path, spec.synthesis, bcls) for bcls, _, _ in backbones
    ]
    corpus = spec.corpus.model_dump(exclude_none=True)
    runs: list[Run] = []
    ids: set[str] = set()
    planned: dict[tuple[Any, ...], Run] = {}  # what a chained run looks its source up by
    for b_i, (mcls, mparams, mswept, mdata, chain), seed in itertools.product(
        range(len(backbones)), methods, spec.seeds
    ):
        bcls, bparams, bswept = backbones[b_i]
        is_anchor = mcls.name == spec.anchor
        if mcls.trains:
            if not recipes:
                raise ConfigError(
                    f"{path}: field data: method {mcls.name!r} trains, so the suite needs at least "
                    f"one [[data]] recipe"
                )
            recipe_list = [
                (r.name, r.model_dump(mode="json"))
                for r in recipes
                if mdata is None or r.name in mdata
            ]
        else:
            recipe_list = [(None, None)]
        for recipe_name, recipe in recipe_list:
            identity = {
                "suite": spec.name,
                "corpus": corpus,
                "evaluation": spec.evaluation.model_dump(mode="json"),
                "backbone": [bcls.name, bcls.version, bparams],
                "method": [mcls.name, mcls.version, mparams],
                "recipe": recipe,
                "seed": seed,
            }
            sources: dict[str, Run] = {}
            if chain is not None:  # the source's training is part of what this one depends on
                where = (bcls.name, b_i, recipe_name, seed)
                sources = _chain_sources(path, chain, planned, where, settings_by_backbone[b_i])
                identity["after"] = sorted({src.train_id for src in sources.values()})
            train_id = f"{bcls.name}-{mcls.name}-{canonical_hash(identity)}"
            for setting in settings_by_backbone[b_i]:
                key = (mcls.name, _canon(mparams), b_i, recipe_name, seed, _canon(setting))
                run_id = train_id
                if setting is not None:  # a [synthesis] table: the setting is part of the run
                    run_id = f"{bcls.name}-{mcls.name}-" + canonical_hash(
                        {**identity, "synthesis": setting}
                    )
                if run_id in ids:
                    continue
                ids.add(run_id)
                run = Run(
                    run_id=run_id,
                    suite=spec.name,
                    suite_version=spec.version,
                    backbone=bcls.name,
                    backbone_version=bcls.version,
                    backbone_params=bparams,
                    method=mcls.name,
                    method_version=mcls.version,
                    method_params=mparams,
                    is_anchor=is_anchor,
                    data_recipe=recipe_name,
                    recipe=recipe,
                    seed=seed,
                    metrics=metrics,
                    synthesis=setting or {},
                    train_id=train_id,
                    after=_after(chain, sources[_canon(setting)]) if chain else None,
                )
                run.swept = tuple(bswept) + tuple(mswept)
                runs.append(run)
                planned.setdefault(key, run)
    return runs


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _chain_sources(
    path: Path,
    chain: _Chain,
    planned: dict[tuple[Any, ...], Run],
    where: tuple[str, int, str | None, int],
    settings: list[dict[str, Any] | None],
) -> dict[str, Run]:
    """Per synthesis setting (canonical JSON), the planned run ``chain`` starts from on the same
    backbone (``where``: name, index), data recipe and seed."""
    backbone, b_i, recipe_name, seed = where
    out = {}
    for setting in settings:
        key = (chain.method, _canon(chain.params), b_i, recipe_name, seed, _canon(setting))
        if key not in planned:
            raise ConfigError(
                f"{path}: field {chain.where}: {chain.text!r} has no run on backbone "
                f"{backbone!r}, data recipe {recipe_name!r}, seed {seed} (a run starts from the "
                "source run with the same backbone, data recipe and seed)"
            )
        out[_canon(setting)] = planned[key]
    return out


def _after(chain: _Chain, src: Run) -> dict[str, Any]:
    """A chained run's ``after``: the source run, its label (with the source's own chain) and
    its system (method identity and chain, no seed: the leaderboard pools seeds)."""
    return {
        "run_id": src.run_id,
        "train_id": src.train_id,
        "label": chain.label + (f" after {src.after['label']}" if src.after else ""),
        "system": [
            src.method,
            src.method_version,
            src.method_params,
            src.after["system"] if src.after else None,
        ],
    }


@dataclass
class _Chain:
    """A method entry's resolved ``after``: the one setting of another method it starts from."""

    where: str  # "methods[2].after"
    text: str  # as written
    method: str
    params: dict[str, Any]
    label: str  # the source's method part as labels show it: "lora(rank=4)"
    entries: list[int]  # the [[methods]] entries holding that setting


_AFTER = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\((.*)\))?\s*$")


def _parse_after(path: Path, where: str, text: str) -> tuple[str, dict[str, str]]:
    """``"lora(rank=4, lr=0.001)"`` -> ``("lora", {"rank": "4", "lr": "0.001"})``."""
    m = _AFTER.match(text)
    picks: dict[str, str] = {}
    bad = m is None
    for part in (m.group(2) or "").split(",") if m and (m.group(2) or "").strip() else ():
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            bad = True
            break
        picks[key.strip()] = value.strip()
    if bad or m is None:
        raise ConfigError(
            f'{path}: field {where}: expected a method name ("lora") or a name with the setting '
            f'to start from ("lora(rank=4)"), got {text!r}'
        )
    return m.group(1), picks


def _matches(value: Any, text: str) -> bool:
    """Whether a parameter value is the one ``text`` writes (as labels do: ``str(value)``, or as
    JSON / a quoted string: ``0.001`` matches ``1e-3``, ``"a"`` matches ``a``)."""
    if str(value) == text or (isinstance(value, str) and text.strip("'\"") == value):
        return True
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def _resolve_chains(
    path: Path,
    spec: SuiteFile,
    by_entry: list[list[tuple[type[Component], dict[str, Any], list[str]]]],
) -> list[_Chain | None]:
    """Each method entry's ``after`` resolved to one setting of another entry (None without)."""
    out: list[_Chain | None] = []
    for i, m in enumerate(spec.methods):
        if m.after is None:
            out.append(None)
            continue
        where = f"methods[{i}].after"
        name, picks = _parse_after(path, where, m.after)
        cls = by_entry[i][0][0]
        if "init_run" not in getattr(cls.Params, "model_fields", {}):
            raise ConfigError(
                f"{path}: field {where}: method {cls.name!r} cannot start from another run "
                "(its params have no init_run); only methods that take init_run accept `after`"
            )
        if any(params.get("init_run") is not None for _, params, _ in by_entry[i]):
            raise ConfigError(
                f"{path}: field {where}: give either `after` or params.init_run, not both"
            )
        entries = [j for j in range(len(spec.methods)) if j != i and by_entry[j][0][0].name == name]
        if not entries:
            names = sorted({r[0][0].name for j, r in enumerate(by_entry) if j != i})
            why = "a method cannot start from itself" if name == cls.name else "no such method"
            raise ConfigError(
                f"{path}: field {where}: no other [[methods]] entry named {name!r} ({why}; "
                f"methods: {', '.join(names)})"
            )
        source_cls = by_entry[entries[0]][0][0]
        if issubclass(source_cls, Method) and not source_cls.trains:  # entries are methods
            raise ConfigError(
                f"{path}: field {where}: method {name!r} does not train, so there are no trained "
                "weights to start from"
            )
        settings: dict[str, dict[str, Any]] = {}
        for j in entries:
            for _, params, _ in by_entry[j]:
                settings.setdefault(_canon(params), params)
        # the label shows what tells the method's settings in this suite apart (this entry's too)
        named = [p for j, r in enumerate(by_entry) if r[0][0].name == name for _, p, _ in r]
        varying = sorted(
            k for k in {k for p in named for k in p} if len({_canon(p.get(k)) for p in named}) > 1
        )
        label = functools.partial(_setting_label, name, varying)
        choices = ", ".join(label(p) for p in settings.values())
        unknown = sorted(set(picks) - {k for p in settings.values() for k in p})
        if unknown:
            raise ConfigError(
                f"{path}: field {where}: method {name!r} has no parameter {unknown[0]!r} "
                f"(its settings in this suite: {choices})"
            )
        chosen = [
            p for p in settings.values() if all(_matches(p.get(k), v) for k, v in picks.items())
        ]
        if len(chosen) != 1:
            what = "matches none" if not chosen else f"matches {len(chosen)}"
            raise ConfigError(
                f"{path}: field {where}: {m.after!r} {what} of the settings of {name!r} in this "
                f'suite ({choices}); name one, e.g. after = "{label(next(iter(settings.values())))}"'
            )
        params = chosen[0]
        holders = [j for j in entries if any(_canon(r[1]) == _canon(params) for r in by_entry[j])]
        out.append(_Chain(where, m.after, name, params, label(params), holders))
    return out


def _setting_label(name: str, keys: list[str], params: dict[str, Any]) -> str:
    """``lora(rank=4)``: a method with the parameters that tell its settings apart."""
    shown = ",".join(f"{k}={params[k]}" for k in keys if k in params)
    return f"{name}({shown})" if shown else name


def _chain_order(path: Path, chains: list[_Chain | None]) -> list[int]:
    """The method entries in file order, each moved after the entries it starts from; a cycle
    (a after b after a) is an error naming the first entry on it."""
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(i: int) -> None:
        if state.get(i) == "done":
            return
        chain = chains[i]
        if state.get(i) == "visiting":
            assert chain is not None
            raise ConfigError(
                f"{path}: field {chain.where}: {chain.text!r} closes a cycle of `after` "
                "(each run would start from the other)"
            )
        state[i] = "visiting"
        for j in chain.entries if chain is not None else ():
            visit(j)
        state[i] = "done"
        order.append(i)

    for i in range(len(chains)):
        visit(i)
    return order


def _resolve_synthesis(
    path: Path, table: dict[str, Any], bcls: type[Component]
) -> list[dict[str, Any] | None]:
    """Each setting of the ``[synthesis]`` sweep as backbone ``bcls`` resolves it; ``[None]``
    (the backbone's defaults, run ids as without the table) when the suite has no table."""
    if not table:
        return [None]
    try:
        combos, _ = expand_sweep(table)
    except ValueError as exc:
        raise ConfigError(f"{path}: field synthesis: {exc}") from None
    resolve = getattr(bcls, "resolve_synthesis", None)
    if resolve is None:
        raise ConfigError(
            f"{path}: field synthesis: backbone {bcls.name!r} declares no synthesis settings "
            "(it has no resolve_synthesis); remove the [synthesis] table"
        )
    out = []
    for combo in combos:
        combo = {
            k: (v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list) else v)
            for k, v in combo.items()
        }
        try:
            out.append(resolve(combo))
        except ValidationError as exc:
            msg = _validation_message(path, "synthesis", exc)
            raise ConfigError(f"{msg} (backbone {bcls.name!r})") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: field synthesis: {exc}") from None
    return out
