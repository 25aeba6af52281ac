"""Helpers for metric authors: the input checks and per-item error handling the built-in metrics
use, so a third-party metric turns a bad clip into an item error the same way.

Every reason a metric records starts with a short category and a colon (``"too short: ..."``), so
summaries can count reasons by category. Reasons that begin with ``"not applicable"`` mark items a
metric has nothing to say about (no reference recording); they are not failures::

    from ttsadapt.metric_helpers import prepare_audio, score_each

    def score(self, items):
        return score_each(items, lambda it: {"peak": float(abs(prepare_audio(it.audio, it.sample_rate)).max())})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .audio import resample, to_mono_float
from .errors import ItemError
from .types import EvalItem, ItemScore

__all__ = [
    "MIN_DURATION_S",
    "NOT_APPLICABLE_NO_REFERENCE",
    "SILENCE_PEAK",
    "prepare_audio",
    "resample",
    "score_each",
]

MIN_DURATION_S = 0.1
# A clip whose peak is below one step of 16-bit PCM holds nothing a 16-bit file could store.
SILENCE_PEAK = 1.0 / 32768.0
NOT_APPLICABLE_NO_REFERENCE = "not applicable: no reference recording"


def prepare_audio(
    audio: np.ndarray | None,
    sample_rate: int | None,
    target_sr: int | None = None,
    *,
    what: str = "audio",
) -> np.ndarray:
    """Validate one waveform and return it as mono float32 at ``target_sr``.

    Accepts any channel count (channels last) and integer PCM. Raises :class:`ItemError` for an
    empty, non-finite, too short (< 0.1 s) or silent (peak below one 16-bit step) clip; ``what``
    names the field in the message.
    """
    if audio is None:
        raise ItemError(f"missing {what}: none given")
    if not sample_rate or sample_rate <= 0:
        raise ItemError(f"bad sample rate: {what} has sample rate {sample_rate!r}")
    try:
        wav = to_mono_float(np.asarray(audio))
    except ItemError as exc:
        raise ItemError(f"bad shape: {what}: {exc}") from exc
    if wav.size == 0:
        raise ItemError(f"empty audio: {what} has no samples")
    if not np.isfinite(wav).all():
        n_bad = int((~np.isfinite(wav)).sum())
        raise ItemError(f"non-finite audio: {what} has {n_bad} NaN/inf samples")
    duration = wav.size / sample_rate
    if duration < MIN_DURATION_S:
        raise ItemError(
            f"too short: {what} lasts {duration:.3f} s, at least {MIN_DURATION_S} s needed"
        )
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        raise ItemError(
            f"silent audio: {what} peaks at {peak:.2e}, below one 16-bit step ({SILENCE_PEAK:.2e})"
        )
    if target_sr is not None and target_sr != sample_rate:
        wav = resample(wav, int(sample_rate), int(target_sr))
    return np.ascontiguousarray(wav, dtype=np.float32)


def score_each(
    items: Sequence[EvalItem], fn: Callable[[EvalItem], ItemScore | dict[str, float]]
) -> list[ItemScore]:
    """Apply ``fn`` to every item; an :class:`ItemError` becomes that item's error row."""
    out: list[ItemScore] = []
    for item in items:
        try:
            result = fn(item)
        except ItemError as exc:
            out.append(ItemScore(id=item.id, error=str(exc)))
            continue
        if isinstance(result, ItemScore):
            out.append(result)
        else:
            out.append(ItemScore(id=item.id, values={k: float(v) for k, v in result.items()}))
    return out
