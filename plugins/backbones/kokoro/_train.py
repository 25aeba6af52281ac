"""Training Kokoro on (text, recording) pairs: durations by DTW, a teacher-forced loss.

Kokoro (StyleTTS 2 lineage) ships no aligner, so a recording's phoneme durations are found by
dynamic time warping: the model first speaks the text itself (its own durations are known), then
the MFCCs of that rendering (per-utterance mean and variance normalised, so another voice matches)
are warped onto the recording's; every recording frame takes the phoneme of the rendering frame it
is matched to. Frames are Kokoro's: 600 samples at 24 kHz (25 ms).

The loss runs the model as at inference but with those durations (teacher forcing):

* ``loss_dur`` — the duration head's 50 sigmoid bins against the target duration written as
  ``[1] * d + [0] * (50 - d)`` (binary cross-entropy, StyleTTS 2's duration loss);
* ``loss_f0`` — predicted F0 against the recording's (``librosa.yin``; voiced frames only: loud
  enough and inside 50–550 Hz), L1 on log F0;
* ``loss_mel`` — L1 between log-mel spectrograms of the decoder's audio and the recording, and
  ``loss_stft`` — multi-resolution STFT loss (spectral convergence + log magnitude), both on one
  window of at most ``segment_frames`` frames per clip (the decoder is convolutional; windows are
  how vocoders are trained), drawn from torch's seeded generator.

``loss = lambda_mel·loss_mel + lambda_stft·loss_stft + lambda_dur·loss_dur + lambda_f0·loss_f0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_RATE = 24000
HOP = 600  # samples per duration frame
F0_HOP = 300  # F0/N are predicted at twice the frame rate
MAX_DUR = 50


@dataclass
class KokoroExample:
    id: str
    ids: Any  # LongTensor (T,) with the pad tokens
    style: Any  # FloatTensor (256,)
    durations: Any  # LongTensor (T,), frames per token, sum = frames
    audio: Any  # FloatTensor (frames * HOP,)
    f0: Any  # FloatTensor (2 * frames,) Hz, 0 where unvoiced


def _mfcc(audio: np.ndarray) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(
        y=audio, sr=SAMPLE_RATE, n_mfcc=21, n_fft=2048, hop_length=HOP, center=False
    )[1:]
    return (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-5)


def dtw_durations(
    own_durations: np.ndarray, own_audio: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """Durations (frames per token) of ``target`` speaking the same tokens as the rendering
    ``own_audio``, whose durations are ``own_durations``; they sum to ``len(target) // HOP``."""
    import librosa

    frames = len(target) // HOP
    a, b = _mfcc(own_audio), _mfcc(target[: frames * HOP])
    n = min(a.shape[1], b.shape[1])
    if n < 2:
        raise ValueError("too short to align")
    _, path = librosa.sequence.dtw(X=a, Y=b, metric="cosine")
    own_frame_for = np.full(b.shape[1], -1)
    for i, j in path[::-1]:  # the path runs end → start; keep each target frame's first match
        if own_frame_for[j] < 0:
            own_frame_for[j] = i
    token_of_frame = np.repeat(np.arange(len(own_durations)), own_durations)
    own_frame_for = np.clip(own_frame_for, 0, len(token_of_frame) - 1)
    tokens = token_of_frame[own_frame_for]
    durations = np.bincount(tokens, minlength=len(own_durations))
    durations[-1] += frames - durations.sum()  # frames the MFCC window did not reach
    return durations


def f0_track(audio: np.ndarray, frames: int) -> np.ndarray:
    """F0 in Hz at the F0 rate (``2 * frames`` values), 0 where the frame is unvoiced or quiet."""
    import librosa

    f0 = librosa.yin(
        audio, fmin=50, fmax=550, sr=SAMPLE_RATE, frame_length=2048, hop_length=F0_HOP, center=True
    )
    rms = librosa.feature.rms(y=audio, frame_length=2048, hop_length=F0_HOP, center=True)[0]
    loud = 20 * np.log10(rms + 1e-9) > 20 * np.log10(rms.max() + 1e-9) - 30
    f0 = np.where(loud & (f0 > 55) & (f0 < 540), f0, 0.0)
    out = np.zeros(2 * frames, dtype=np.float32)
    n = min(len(out), len(f0))
    out[:n] = f0[:n]
    return out


def alignment(durations: Any) -> Any:
    """(1, T, frames) one-hot matrix: frame f belongs to token t."""
    import torch

    frames = int(durations.sum())
    index = torch.repeat_interleave(torch.arange(len(durations)), durations)
    aln = torch.zeros(len(durations), frames)
    aln[index, torch.arange(frames)] = 1.0
    return aln.unsqueeze(0)


class SpectralLoss:
    """Log-mel L1 and multi-resolution STFT loss (spectral convergence + log magnitude)."""

    RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))

    def __init__(self) -> None:
        import librosa
        import torch

        self.mel_basis = torch.from_numpy(
            librosa.filters.mel(sr=SAMPLE_RATE, n_fft=1024, n_mels=80, fmin=0, fmax=12000)
        ).float()

    @staticmethod
    def _mag(x: Any, n_fft: int, hop: int) -> Any:
        import torch

        spec = torch.stft(
            x, n_fft, hop, window=torch.hann_window(n_fft, device=x.device), return_complex=True
        )
        return spec.abs().clamp_min(1e-5)

    def __call__(self, pred: Any, target: Any) -> tuple[Any, Any]:
        import torch

        mel = lambda x: torch.log(self.mel_basis.to(x.device) @ self._mag(x, 1024, 256))  # noqa: E731
        loss_mel = (mel(pred) - mel(target)).abs().mean()
        loss_stft = pred.new_zeros(())
        for n_fft, hop in self.RESOLUTIONS:
            p, t = self._mag(pred, n_fft, hop), self._mag(target, n_fft, hop)
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-5)
            loss_stft = loss_stft + sc + (p.log() - t.log()).abs().mean()
        return loss_mel, loss_stft / len(self.RESOLUTIONS)


def text_side(kmodel: Any, ids: Any, ref_s: Any) -> tuple[Any, Any, Any, Any]:
    """The prosody predictor's text features ``d`` (1, T, C) and the duration head's logits
    (1, T, MAX_DUR) for token ids (1, T) and a style (1, 256); with the lengths and mask."""
    import torch

    n_tokens = ids.shape[1]
    lengths = torch.tensor([n_tokens], device=ids.device)
    mask = torch.zeros(1, n_tokens, dtype=torch.bool, device=ids.device)
    bert = kmodel.bert(ids, attention_mask=(~mask).int())
    d_en = kmodel.bert_encoder(bert).transpose(-1, -2)
    d = kmodel.predictor.text_encoder(d_en, ref_s[:, 128:], lengths, mask)
    x, _ = kmodel.predictor.lstm(d)
    return d, kmodel.predictor.duration_proj(x), lengths, mask


def teacher_forced_losses(
    kmodel: Any, ex: KokoroExample, segment_frames: int, spectral: SpectralLoss
) -> dict[str, Any]:
    """The four loss parts for one example (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    device = next(kmodel.parameters()).device
    ids = ex.ids.unsqueeze(0).to(device)
    ref_s = ex.style.unsqueeze(0).to(device)
    durations = ex.durations
    style_p = ref_s[:, 128:]
    d, logits, lengths, mask = text_side(kmodel, ids, ref_s)
    logits = logits[0]  # (T, MAX_DUR)
    bins = (torch.arange(MAX_DUR).unsqueeze(0) < durations.clamp(max=MAX_DUR).unsqueeze(1)).float()
    loss_dur = F.binary_cross_entropy_with_logits(logits, bins.to(device))
    aln = alignment(durations).to(device)
    en = d.transpose(-1, -2) @ aln
    f0_pred, n_pred = kmodel.predictor.F0Ntrain(en, style_p)
    f0_target = ex.f0.to(device)
    voiced = f0_target > 0
    if voiced.any():
        loss_f0 = (
            (torch.log(f0_pred[0][voiced].clamp_min(1.0)) - torch.log(f0_target[voiced]))
            .abs()
            .mean()
        )
    else:
        loss_f0 = f0_pred.new_zeros(())
    t_en = kmodel.text_encoder(ids, lengths, mask)
    asr = t_en @ aln
    frames = asr.shape[-1]
    seg = min(segment_frames, frames)
    start = int(torch.randint(0, frames - seg + 1, ())) if frames > seg else 0
    stop = start + seg
    audio = kmodel.decoder(
        asr[..., start:stop],
        f0_pred[:, 2 * start : 2 * stop],
        n_pred[:, 2 * start : 2 * stop],
        ref_s[:, :128],
    ).reshape(-1)
    target = ex.audio[start * HOP : stop * HOP].to(device)
    n = min(audio.numel(), target.numel())
    loss_mel, loss_stft = spectral(audio[:n], target[:n])
    return {"loss_mel": loss_mel, "loss_stft": loss_stft, "loss_dur": loss_dur, "loss_f0": loss_f0}
