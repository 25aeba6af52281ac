"""Shared pieces of the built-in metrics: input validation, resampling, per-item error rows.

Every reason a metric records starts with a short category and a colon (``"too short: ..."``), so
summaries can count reasons by category. Reasons that begin with ``"not applicable"`` mark items a
metric has nothing to say about (no reference recording); they are not failures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ttsadapt.audio import resample, to_mono_float
from ttsadapt.errors import ItemError
from ttsadapt.types import EvalItem, ItemScore

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


def cache_root() -> Path:
    """ttsadapt's cache folder: ``$TTSADAPT_CACHE`` or ``~/.cache/ttsadapt``."""
    from ttsadapt.paths import cache_root as root

    return root()


def torch_threads() -> int:
    """Threads for CPU inference: all cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def ort_options(threads: int | None = None):
    """onnxruntime session options for the metrics' CPU inference: ``threads`` intra-op threads
    (default: all cores), one inter-op thread, and no spin-waiting. Spinning buys a little latency
    on an idle machine but burns a whole core per waiting thread when other jobs share the cores
    (measured: DNS-MOS 30 % more CPU time on a loaded 2-core machine)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@contextlib.contextmanager
def torch_thread_limit(n: int) -> Iterator[None]:
    """Run a block with at most ``n`` torch intra-op threads, restoring the setting afterwards.

    For small recurrent models (resemblyzer's 3x256 LSTM) a second thread adds a barrier per time
    step; on a shared machine the waiting thread spins, which cost 6x the CPU time of one thread."""
    import torch

    before = torch.get_num_threads()
    if before > n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
