"""Kokoro as a preference policy (``grpo``, ``dpo``): sampled phoneme durations.

Kokoro's duration head gives each phoneme 50 logits ``z``; inference speaks
``round(Σ σ(z_j))`` frames (at least one). As a policy each bin is a Bernoulli draw,
``b_j ~ Bernoulli(σ(z_j / τ))`` with ``τ = temperature`` (default 1), and the phoneme lasts
``max(1, Σ b_j)`` frames; the log-probability of a rollout is the sum over its phonemes and bins of
``b·log σ(z/τ) + (1 − b)·log(1 − σ(z/τ))``. F0, energy and the audio follow deterministically from
the sampled durations (the decoder's noise is seeded), so a reward on the audio — CER, speaker
similarity, quality — is a reward on this prosody policy. Gradients reach the text side (PL-BERT,
its projection, the prosody predictor's text encoder, LSTM and duration head): LoRA scope ``lm``,
or all parameters. One action is one phoneme's duration (``n_actions`` = phonemes). Kokoro has no
length cap, so every rollout ``stopped``.

The ``k`` samples of a request are spoken in one batched pass (alignments padded to the longest
sample, audio trimmed back to each sample's own frames). DPO's score is the same log-probability
(``dpo_beta_scale`` 1, as for token LMs); :func:`rollout_stats` adds the exact entropy of the bins
and the closed-form KL between the policy's and the reference's Bernoullis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ttsadapt.errors import ConfigError
from ttsadapt.preference import Rollout, reference_policy
from ttsadapt.types import SynthesisRequest

from ._train import HOP, alignment, text_side

if TYPE_CHECKING:
    import torch

    from . import KokoroBackbone


class KokoroSampling(BaseModel):
    """The sampling settings ``grpo``/``dpo`` may pass (``temperature``, or ``sampling = {...}``)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(1.0, gt=0, description="divides the duration logits")


def _settings(settings: dict[str, Any] | None) -> KokoroSampling:
    try:
        return KokoroSampling.model_validate(dict(settings or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(
            f"kokoro sampling setting {'.'.join(map(str, err['loc']))!r}: {err['msg']}; known: "
            f"{sorted(KokoroSampling.model_fields)}"
        ) from None


def _bernoulli_logp(logits: torch.Tensor, bins: torch.Tensor, temperature: float) -> torch.Tensor:
    """Summed log-probability of ``bins`` (…, T, 50) under Bernoulli(σ(logits / τ))."""
    import torch.nn.functional as F

    z = logits / temperature
    return -F.binary_cross_entropy_with_logits(z, bins.float(), reduction="none").sum(dim=(-1, -2))


def sample_groups(
    bb: KokoroBackbone,
    requests: Sequence[SynthesisRequest],
    k: int,
    settings: dict[str, Any] | None,
    seed: int,
) -> list[list[Rollout]]:
    import torch

    if k < 1:
        raise ValueError(f"sample_groups: k must be >= 1, got {k}")
    tau = _settings(settings).temperature
    kmodel = bb._kmodel()
    module = bb._require_loaded()
    generator = torch.Generator().manual_seed(int(seed))
    was_training = module.training
    module.eval()
    groups: list[list[Rollout]] = []
    try:
        for g, request in enumerate(requests):
            t0 = time.perf_counter()
            ids = bb.phoneme_ids(request.text, request.language or "en")
            with torch.no_grad():
                input_ids = torch.tensor([ids], dtype=torch.long, device=bb.device)
                ref_s = bb._style(len(ids)).unsqueeze(0).to(bb.device)
                d, logits, lengths, mask = text_side(kmodel, input_ids, ref_s)
                probs = torch.sigmoid(logits[0] / tau).cpu()  # (T, 50)
                bins = torch.rand((k, *probs.shape), generator=generator) < probs
                logps = _bernoulli_logp(logits[0].cpu().expand(k, -1, -1), bins, tau)
                durations = bins.sum(dim=-1).clamp(min=1)  # (k, T)
                audio = _speak_durations(
                    bb, kmodel, input_ids, ref_s, d, lengths, mask, durations, seed + g
                )
            per = (time.perf_counter() - t0) / k
            groups.append(
                [
                    Rollout(
                        request=request,
                        group=g,
                        audio=audio[i],
                        actions={"ids": ids, "bins": bins[i], "temperature": tau},
                        old_logprob=float(logps[i]),
                        n_actions=len(ids),
                        stopped=True,
                        timings={"sample_s": per},
                    )
                    for i in range(k)
                ]
            )
    finally:
        module.train(was_training)
    return groups


def _speak_durations(
    bb: KokoroBackbone,
    kmodel: Any,
    input_ids: torch.Tensor,
    ref_s: torch.Tensor,
    d: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    durations: torch.Tensor,
    seed: int,
) -> list[np.ndarray]:
    """Audio for each row of ``durations`` (k, T), in one batched decoder pass."""
    import torch

    k = durations.shape[0]
    frames = durations.sum(dim=1)
    most = int(frames.max())
    aln = torch.zeros(k, durations.shape[1], most, device=bb.device)
    for i in range(k):
        one = alignment(durations[i])[0]
        aln[i, :, : one.shape[1]] = one
    en = d.expand(k, -1, -1).transpose(-1, -2) @ aln
    style_p = ref_s[:, 128:].expand(k, -1)
    f0, n = kmodel.predictor.F0Ntrain(en, style_p)
    t_en = kmodel.text_encoder(input_ids, lengths, mask)
    asr = t_en.expand(k, -1, -1) @ aln
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        audio = kmodel.decoder(asr, f0, n, ref_s[:, :128].expand(k, -1)).reshape(k, -1)
    return [
        np.clip(audio[i, : int(frames[i]) * HOP].float().cpu().numpy(), -1.0, 1.0).astype(
            np.float32
        )
        for i in range(k)
    ]


def _logits_by_request(
    bb: KokoroBackbone, rollouts: Sequence[Rollout]
) -> dict[tuple, torch.Tensor]:
    """Duration logits (T, 50) of each distinct token sequence, under the current parameters."""
    import torch

    kmodel = bb._kmodel()
    out: dict[tuple, torch.Tensor] = {}
    for r in rollouts:
        ids = tuple(r.actions["ids"])
        if ids not in out:
            input_ids = torch.tensor([list(ids)], dtype=torch.long, device=bb.device)
            ref_s = bb._style(len(ids)).unsqueeze(0).to(bb.device)
            out[ids] = text_side(kmodel, input_ids, ref_s)[1][0]
    return out


def rollout_logprobs(bb: KokoroBackbone, rollouts: Sequence[Rollout]) -> torch.Tensor:
    import torch

    logits = _logits_by_request(bb, rollouts)
    return torch.stack(
        [
            _bernoulli_logp(
                logits[tuple(r.actions["ids"])],
                r.actions["bins"].to(bb.device),
                r.actions["temperature"],
            )
            for r in rollouts
        ]
    )


def rollout_stats(bb: KokoroBackbone, rollouts: Sequence[Rollout], with_kl: bool) -> dict[str, Any]:
    """``logprob``, the exact entropy of the bins and (``with_kl``) the closed-form
    ``KL(policy || reference)`` of their Bernoullis, summed per rollout; all ``(n,)``."""
    import torch
    import torch.nn.functional as F

    logits = _logits_by_request(bb, rollouts)
    logp, entropy, kl = [], [], []
    ref_logits = {}
    if with_kl:
        with reference_policy(bb), torch.no_grad():
            ref_logits = _logits_by_request(bb, rollouts)
    for r in rollouts:
        key, tau = tuple(r.actions["ids"]), r.actions["temperature"]
        z = logits[key] / tau
        logp.append(_bernoulli_logp(logits[key], r.actions["bins"].to(bb.device), tau))
        p = torch.sigmoid(z)
        entropy.append(F.binary_cross_entropy_with_logits(z, p, reduction="sum").detach())
        if with_kl:
            q = torch.sigmoid(ref_logits[key] / tau)
            eps = 1e-6
            kl.append(
                (
                    p * (torch.log(p + eps) - torch.log(q + eps))
                    + (1 - p) * (torch.log(1 - p + eps) - torch.log(1 - q + eps))
                ).sum()
            )
    out = {"logprob": torch.stack(logp), "entropy": torch.stack(entropy)}
    if with_kl:
        out["kl"] = torch.stack(kl)
    return out
