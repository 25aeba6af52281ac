"""Plain data passed between the host and components.

These are the only shapes a plugin needs to know: a :class:`Clip` is one line of a manifest, an
:class:`EvalItem` is one utterance to score, a :class:`SynthesisRequest` is one utterance to speak,
and an :class:`ItemScore` is one metric's answer for one item.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Clip:
    """One manifest line: an audio file with its transcript.

    ``audio`` is an absolute path (manifests store it relative to the manifest's folder).
    ``speaker_prompt`` is a recording of the clip's speaker to clone the voice from (manifest key
    ``speaker_prompt``); ``reference_audio`` is a time-aligned recording of the same utterance, the
    reference of intrusive metrics such as PESQ and STOI (manifest key ``reference_audio``).
    ``ref_audio`` is the deprecated name of ``speaker_prompt``, kept as an attribute and a
    constructor keyword.
    """

    id: str
    audio: Path
    text: str
    speaker: str
    language: str
    duration_s: float | None = None
    split: str | None = None
    speaker_prompt: Path | None = None
    reference_audio: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref_audio(self) -> Path | None:
        """Deprecated name of :attr:`speaker_prompt`."""
        return self.speaker_prompt

    @ref_audio.setter
    def ref_audio(self, value: Path | None) -> None:
        self.speaker_prompt = value


_clip_init = Clip.__init__


@functools.wraps(_clip_init)
def _clip_init_accepting_ref_audio(self: Clip, *args: Any, ref_audio: Any = None, **kwargs: Any):
    if ref_audio is not None:
        if kwargs.get("speaker_prompt") not in (None, ref_audio):
            raise TypeError(
                "Clip(): both speaker_prompt and its deprecated name ref_audio given, with "
                f"different paths ({kwargs['speaker_prompt']} and {ref_audio})"
            )
        kwargs["speaker_prompt"] = ref_audio
    _clip_init(self, *args, **kwargs)


Clip.__init__ = _clip_init_accepting_ref_audio  # type: ignore[method-assign]


@dataclass
class SynthesisRequest:
    """One utterance for a backbone to speak.

    ``prompt_audio``/``prompt_text`` are set for reference cloning or continuation; ``speaker`` names
    the target voice (a backbone may condition on it or ignore it).
    """

    id: str
    text: str
    language: str
    speaker: str
    prompt_audio: np.ndarray | None = None
    prompt_sample_rate: int | None = None
    prompt_text: str | None = None


@dataclass
class EvalItem:
    """One utterance to score: mono float32 audio in [-1, 1] plus what metrics may need."""

    id: str
    audio: np.ndarray
    sample_rate: int
    text: str = ""
    language: str = "en"
    speaker: str = ""
    reference_audio: np.ndarray | None = None
    reference_sample_rate: int | None = None
    speaker_prompt: np.ndarray | None = None
    speaker_prompt_sample_rate: int | None = None


@dataclass
class ItemScore:
    """One metric's result for one item: ``values`` maps output name to a float, or ``error`` says
    why the item could not be scored (the batch goes on; the error row is counted)."""

    id: str
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None
