"""Data recipes: the declarative path from a manifest's clips to a run's training data.

A suite's ``[[data]]`` table is a :class:`Recipe`. :func:`prepare_training_data` applies it in a
fixed order, every step deterministic under ``seed`` and described in ``PreparedData.report``
(which goes into the run's provenance):

1. **select** speakers/languages; clips of the ``eval`` split are never trained on;
2. **filters** in the order given (registered ``filter`` plugins), each dropped clip with its reason;
3. **split** per language into train/validation (default 90/10; a clip's manifest ``split`` wins
   when ``use_manifest_splits``). The split is ranked by a hash of ``split.seed`` and the clip id
   (or speaker, when ``speaker_disjoint``), so it does not move across run seeds and every seed
   trains on the same data;
4. **mix** — hours per speaker (``{"spk1": 2, "spk2": 2, "spk3": 2}``) or fractional shares of
   each speaker's hours (the "Mix" 2/9 + 1/9 recipes), clips drawn with the run seed;
5. **upsample** a language to a target share of the *training* hours (the weak language to 40 %);
   validation keeps its natural ratio;
6. **replay**: the target data repeated ``target_upsample`` times and mixed with replay
   (pre-training) clips from another manifest, by hours or by share of the final mix;
7. **language tags** in front of the text (``[km] …``), train and validation alike.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, PluginError
from ..types import Clip
from .manifest import load_manifest, summarize_clips


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSpec(_Model):
    """Per-language train/validation split."""

    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    speaker_disjoint: bool = False
    use_manifest_splits: bool = True
    seed: int = 0


class MixSpec(_Model):
    """A multi-speaker mix: exactly one of ``hours`` or ``shares``.

    ``hours``: training hours per speaker (speakers not named are left out).
    ``shares``: per speaker, the fraction of ``total_hours`` when that is set, else the fraction
    of the speaker's own available training hours.
    """

    hours: dict[str, float] | None = None
    shares: dict[str, float] | None = None
    total_hours: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> MixSpec:
        if (self.hours is None) == (self.shares is None):
            raise ValueError("give exactly one of 'hours' or 'shares'")
        for key, table in (("hours", self.hours), ("shares", self.shares)):
            for spk, v in (table or {}).items():
                if not v > 0:
                    raise ValueError(f"{key}[{spk!r}] must be > 0, got {v}")
                if key == "shares" and v > 1:
                    raise ValueError(f"shares[{spk!r}] must be a fraction in (0, 1], got {v}")
        return self


class ReplaySpec(_Model):
    """Mix the target data, repeated ``target_upsample`` times, with replay data."""

    manifest: str
    target_upsample: int = Field(1, ge=1)
    replay_hours: float | None = Field(None, gt=0)
    replay_fraction: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _amount(self) -> ReplaySpec:
        if self.replay_hours is not None and self.replay_fraction is not None:
            raise ValueError("give at most one of 'replay_hours' or 'replay_fraction'")
        return self


class Recipe(_Model):
    """One data recipe (a suite's ``[[data]]`` table)."""

    name: str = Field(min_length=1)
    speakers: list[str] | None = None
    languages: list[str] | None = None
    filters: list[dict[str, Any]] = Field(default_factory=list)
    language_tags: bool = False
    split: SplitSpec = Field(default_factory=SplitSpec)
    upsample: dict[str, float] = Field(default_factory=dict)
    mix: MixSpec | None = None
    replay: ReplaySpec | None = None

    @field_validator("filters")
    @classmethod
    def _filters_named(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, entry in enumerate(value):
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                raise ValueError(f"filters[{i}] needs a 'name' (the filter plugin), got {entry}")
        return value

    @field_validator("upsample")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        for lang, share in value.items():
            if not 0 < share < 1:
                raise ValueError(f"upsample[{lang!r}] is a target share in (0, 1), got {share}")
        if sum(value.values()) >= 1:
            raise ValueError(f"upsample shares sum to {sum(value.values()):g}; must be < 1")
        return value


def recipe_from_table(table: dict[str, Any], where: str = "data") -> Recipe:
    """``Recipe.model_validate`` with a :class:`ConfigError` naming each bad field path."""
    try:
        return Recipe.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def format_validation_error(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}.{loc}: {err['msg']}" if loc else f"{where}: {err['msg']}")
    return "; ".join(parts)


@dataclass
class PreparedData:
    train: list[Clip]
    validation: list[Clip]
    dropped: list[tuple[Clip, str]]
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _unit_hash(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _hours(clips: Sequence[Clip]) -> float:
    return sum(c.duration_s or 0.0 for c in clips) / 3600.0


def _rng(seed: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(_unit_hash(stage) * 2**32)])


def _reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].strip() if ":" in reason else reason


def _copy(clip: Clip, suffix: str, **extra: Any) -> Clip:
    new_extra = dict(clip.extra)
    new_extra.setdefault("source_id", clip.id)
    new_extra.update(extra)
    return replace(clip, id=f"{clip.id}{suffix}", extra=new_extra)


def _shares(clips: Sequence[Clip]) -> dict[str, float]:
    total = _hours(clips)
    by_lang: dict[str, float] = defaultdict(float)
    for c in clips:
        by_lang[c.language] += (c.duration_s or 0.0) / 3600.0
    return {k: round(v / total, 6) if total else 0.0 for k, v in sorted(by_lang.items())}


# --------------------------------------------------------------------------- steps


def split_clips(
    clips: Sequence[Clip], spec: SplitSpec
) -> tuple[list[Clip], list[Clip], dict[str, Any]]:
    """Per-language train/validation split (see the module doc). Returns (train, val, info)."""
    train: list[Clip] = []
    val: list[Clip] = []
    free: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        if spec.use_manifest_splits and c.split == "train":
            train.append(c)
        elif spec.use_manifest_splits and c.split == "validation":
            val.append(c)
        else:
            free[c.language].append(c)
    info: dict[str, Any] = {"from_manifest": {"train": len(train), "validation": len(val)}}
    for lang in sorted(free):
        group = free[lang]
        frac = spec.validation_fraction
        if spec.speaker_disjoint:
            speakers = sorted({c.speaker for c in group}, key=lambda s: _unit_hash(spec.seed, s))
            hours = {s: _hours([c for c in group if c.speaker == s]) for s in speakers}
            total = sum(hours.values())
            chosen: set[str] = set()
            acc = 0.0
            for spk in speakers[:-1]:  # at least one speaker stays in training
                if frac == 0 or acc >= frac * total - 1e-9:
                    break
                chosen.add(spk)
                acc += hours[spk]
            val.extend(c for c in group if c.speaker in chosen)
            train.extend(c for c in group if c.speaker not in chosen)
            info[lang] = {"validation_speakers": sorted(chosen)}
        else:
            ranked = sorted(group, key=lambda c: _unit_hash(spec.seed, c.id))
            n_val = round(frac * len(ranked))
            if frac > 0 and len(ranked) >= 2:
                n_val = min(max(n_val, 1), len(ranked) - 1)
            val.extend(ranked[:n_val])
            train.extend(ranked[n_val:])
            info[lang] = {"validation_clips": n_val, "train_clips": len(ranked) - n_val}
    return train, val, info


def _take_hours(clips: list[Clip], hours: float, rng: np.random.Generator) -> list[Clip]:
    order = rng.permutation(len(clips))
    taken: list[Clip] = []
    acc = 0.0
    for i in order:
        if acc >= hours:
            break
        taken.append(clips[int(i)])
        acc += (clips[int(i)].duration_s or 0.0) / 3600.0
    return taken


def mix_speakers(
    train: list[Clip], spec: MixSpec, seed: int
) -> tuple[list[Clip], list[tuple[Clip, str]], dict[str, Any]]:
    """Draw the multi-speaker mix from the training clips. Returns (mix, left out, info)."""
    by_speaker: dict[str, list[Clip]] = defaultdict(list)
    for c in train:
        by_speaker[c.speaker].append(c)
    wanted = spec.hours if spec.hours is not None else spec.shares or {}
    missing = sorted(set(wanted) - set(by_speaker))
    if missing:
        raise ConfigError(
            f"mix names speaker(s) with no training clips: {', '.join(missing)} "
            f"(speakers present: {', '.join(sorted(by_speaker))})"
        )
    kept: list[Clip] = []
    left: list[tuple[Clip, str]] = []
    info: dict[str, Any] = {}
    for spk in sorted(by_speaker):
        group = by_speaker[spk]
        if spk not in wanted:
            left.extend((c, "mix: speaker not in the mix") for c in group)
            continue
        available = _hours(group)
        if spec.hours is not None:
            target = spec.hours[spk]
        elif spec.total_hours is not None:
            target = wanted[spk] * spec.total_hours
        else:
            target = wanted[spk] * available
        taken = _take_hours(group, target, _rng(seed, f"mix/{spk}"))
        taken_ids = {c.id for c in taken}
        left.extend(
            (c, f"mix: beyond speaker {spk!r}'s {target:.3f} h")
            for c in group
            if c.id not in taken_ids
        )
        kept.extend(taken)
        info[spk] = {
            "target_hours": round(target, 6),
            "available_hours": round(available, 6),
            "hours": round(_hours(taken), 6),
            "shortfall": available < target,
        }
    return kept, left, info


def upsample_languages(
    train: list[Clip], targets: dict[str, float], seed: int
) -> tuple[list[Clip], dict[str, Any]]:
    """Repeat clips of each target language until it holds its share of the training hours.

    A language already at or above its share is left as it is (noted in the info). Whole
    repetitions are copies of every clip; the fractional rest is a seeded random subset.
    """
    info: dict[str, Any] = {}
    out = list(train)
    lang_hours: defaultdict[str, float] = defaultdict(float)
    for c in train:
        lang_hours[c.language] += (c.duration_s or 0.0) / 3600.0
    total = sum(lang_hours.values())
    fixed = {lang: share for lang, share in targets.items()}
    missing = sorted(set(fixed) - set(lang_hours))
    if missing:
        raise ConfigError(
            f"upsample names language(s) with no training clips: {', '.join(missing)}"
        )
    rest_hours = total - sum(lang_hours[lang] for lang in fixed)
    rest_share = 1.0 - sum(fixed.values())
    for lang, share in sorted(fixed.items()):
        natural = lang_hours[lang] / total if total else 0.0
        # hours the language needs so that lang / (rest + all targets) == share
        need = share * rest_hours / rest_share if rest_share > 0 else lang_hours[lang]
        factor = need / lang_hours[lang] if lang_hours[lang] else 1.0
        entry: dict[str, Any] = {"natural_share": round(natural, 6), "target_share": share}
        if factor <= 1.0:
            entry.update(factor=1.0, note="already at or above its target share; not upsampled")
            info[lang] = entry
            continue
        group = [c for c in train if c.language == lang]
        whole = math.floor(factor)
        for k in range(2, whole + 1):
            out.extend(_copy(c, f"~up{k}", upsampled=True) for c in group)
        frac = factor - whole
        n_extra = round(frac * len(group))
        if n_extra:
            pick = _rng(seed, f"upsample/{lang}").choice(len(group), n_extra, replace=False)
            out.extend(
                _copy(group[int(i)], f"~up{whole + 1}", upsampled=True) for i in sorted(pick)
            )
        entry["factor"] = round(factor, 6)
        info[lang] = entry
    final = _shares(out)
    for lang in info:
        info[lang]["share"] = final.get(lang, 0.0)
    return out, info


def mix_replay(train: list[Clip], spec: ReplaySpec, seed: int) -> tuple[list[Clip], dict[str, Any]]:
    """Repeat the target data ``target_upsample`` times and add replay clips."""
    load = load_manifest(Path(spec.manifest))
    if not load.clips:
        raise ConfigError(
            f"replay manifest {spec.manifest} has no usable clip "
            f"({len(load.quarantine)} quarantined: {load.counts()})"
        )
    target = list(train)
    for k in range(2, spec.target_upsample + 1):
        target.extend(_copy(c, f"~rep{k}", upsampled=True) for c in train)
    target_h = _hours(target)
    if spec.replay_hours is not None:
        want = spec.replay_hours
    elif spec.replay_fraction is not None:
        want = spec.replay_fraction / (1 - spec.replay_fraction) * target_h
    else:
        want = _hours(load.clips)
    pool = [
        replace(c, id=f"replay:{c.id}", extra={**c.extra, "source": "replay"}) for c in load.clips
    ]
    replay = _take_hours(pool, want, _rng(seed, "replay"))
    info = {
        "manifest": spec.manifest,
        "target_upsample": spec.target_upsample,
        "target_hours": round(target_h, 6),
        "replay_hours": round(_hours(replay), 6),
        "replay_clips": len(replay),
        "replay_available_hours": round(_hours(load.clips), 6),
        "replay_quarantine": load.counts(),
    }
    return target + replay, info


def tag_language(clips: Sequence[Clip]) -> list[Clip]:
    """Copies with ``[lang] `` in front of the text (ids unchanged)."""
    out = []
    for c in clips:
        prefix = f"[{c.language}] "
        out.append(
            c
            if c.text.startswith(prefix)
            else replace(c, text=prefix + c.text, extra=dict(c.extra))
        )
    return out


# --------------------------------------------------------------------------- the recipe


def prepare_training_data(
    clips: list[Clip],
    recipe: Recipe,
    seed: int,
    registry: Any,
    filter_context: dict[str, Any] | None = None,
) -> PreparedData:
    """Apply ``recipe`` to ``clips`` (see the module doc for the order of steps)."""
    excluded: Counter[str] = Counter()
    selected: list[Clip] = []
    speakers = set(recipe.speakers) if recipe.speakers is not None else None
    languages = set(recipe.languages) if recipe.languages is not None else None
    for c in clips:
        if c.split == "eval":
            excluded["eval split (held out)"] += 1
        elif speakers is not None and c.speaker not in speakers:
            excluded["speaker not in recipe"] += 1
        elif languages is not None and c.language not in languages:
            excluded["language not in recipe"] += 1
        else:
            selected.append(c)
    if speakers is not None:
        absent = sorted(speakers - {c.speaker for c in clips})
        if absent:
            raise ConfigError(
                f"recipe '{recipe.name}': speakers not in the data: {', '.join(absent)}"
            )

    dropped: list[tuple[Clip, str]] = []
    by_filter: dict[str, int] = {}
    ctx = {"registry": registry, **(filter_context or {})}
    kept = selected
    for i, entry in enumerate(recipe.filters):
        params = {k: v for k, v in entry.items() if k != "name"}
        cls = registry.get("filter", entry["name"])
        try:
            flt = cls(**params)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, f"data '{recipe.name}'.filters[{i}] ({entry['name']})")
            ) from None
        result = flt.apply(kept, ctx)
        if len(result.kept) + len(result.dropped) != len(kept):
            raise PluginError(
                f"filter '{entry['name']}' returned {len(result.kept)} kept + "
                f"{len(result.dropped)} dropped for {len(kept)} clips; every clip must come back"
            )
        by_filter[f"{i}:{entry['name']}"] = len(result.dropped)
        dropped.extend(result.dropped)
        kept = result.kept

    train, validation, split_info = split_clips(kept, recipe.split)
    report: dict[str, Any] = {
        "recipe": recipe.model_dump(mode="json"),
        "seed": seed,
        "input_clips": len(clips),
        "excluded_by_reason": dict(excluded),
        "dropped_by_filter": by_filter,
        "split": split_info,
    }
    if recipe.mix is not None:
        train, left, report["mix"] = mix_speakers(train, recipe.mix, seed)
        mix_speakers_set = set(report["mix"])
        excluded.update(_reason_code(r) + ": not drawn" for _, r in left)
        validation = [c for c in validation if c.speaker in mix_speakers_set]
    natural = _shares(train)
    if recipe.upsample:
        train, report["upsample"] = upsample_languages(train, recipe.upsample, seed)
    if recipe.replay is not None:
        train, report["replay"] = mix_replay(train, recipe.replay, seed)
    if recipe.language_tags:
        train, validation = tag_language(train), tag_language(validation)
    report.update(
        excluded_by_reason=dict(excluded),
        dropped_by_reason=dict(Counter(_reason_code(r) for _, r in dropped)),
        dropped=len(dropped),
        train=summarize_clips(train),
        validation=summarize_clips(validation),
        shares={
            "train_natural": natural,
            "train": _shares(train),
            "validation": _shares(validation),
        },
    )
    return PreparedData(train, validation, dropped, report)
