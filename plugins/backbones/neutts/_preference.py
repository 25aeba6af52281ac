"""NeuTTS's side of the preference protocol (:mod:`ttsadapt.preference`): batched rollouts of speech
tokens, and their log-probabilities under the current (or reference) LM.

Sampling is our own loop over the LM with a KV cache (left-padded prompts, one batch for all K x
requests) so that the sampling transform is one function, :func:`sampling_logits`, used both to
sample and to score: logits / temperature, the top-k mask, and the end token masked before
``min_new_tokens``. The actions of a rollout are the tokens it generated after
``<|SPEECH_GENERATION_START|>``, its end token included (the stop decision is an action, so length
is learnt); prompt positions (text, phonemes, a reference's codes) are never scored: only the logits
at the positions that predict generated tokens are gathered.

DPO scores (:func:`preference_scores`) are the same sums under the LM's plain distribution
(temperature 1, no top-k), the likelihood DPO's objective is defined on: a top-k mask there would
make a chosen token the policy has since moved out of its top k a -inf (or huge) log-probability.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ttsadapt.errors import ItemError
from ttsadapt.preference import Rollout, reference_policy
from ttsadapt.types import SynthesisRequest

if TYPE_CHECKING:
    import torch

    from . import NeuTTS

# a masked logit: finite, so scoring a token the mask now excludes gives a very low log-prob, not
# -inf (whose sums and differences are NaN); exp() of it underflows to exactly 0 in sampling
MASKED = -1.0e4


def sampling_logits(
    logits: torch.Tensor,
    steps: torch.Tensor,
    temperature: float,
    top_k: int,
    min_new_tokens: int,
    end_id: int,
) -> torch.Tensor:
    """The sampling transform: ``logits`` (..., V) at generation steps ``steps`` (broadcast to
    ``logits.shape[:-1]``; 0 = the first generated token) -> logits whose softmax is the
    distribution sampled from."""
    import torch

    out = logits.float() / float(temperature)
    if min_new_tokens > 0:
        early = (steps < min_new_tokens).expand(out.shape[:-1])
        end = out[..., end_id]
        out = out.clone()
        out[..., end_id] = torch.where(early, torch.full_like(end, MASKED), end)
    if top_k and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, MASKED)
    return out


def _device(bb: NeuTTS):
    return bb.module.get_input_embeddings().weight.device


def _settings(bb: NeuTTS, settings: dict[str, Any] | None) -> dict[str, Any]:
    s = bb.decoding_settings(settings)
    if s.get("int8"):
        from ttsadapt.errors import ConfigError

        raise ConfigError("neutts: preference training samples with the live LM; unset int8")
    return s


def sample_groups(
    bb: NeuTTS,
    requests: Sequence[SynthesisRequest],
    k: int,
    settings: dict[str, Any] | None,
    seed: int,
) -> list[list[Rollout]]:
    """``k`` rollouts per request, sampled together: all ``k`` x requests rows in one batch, or,
    when ``settings`` give a ``batch_size``, batches of as many whole groups as it holds (never
    less than one group of ``k`` rows); deterministic for ``seed``."""
    import torch

    if k < 1:
        raise ValueError(f"sample_groups: k must be >= 1, got {k}")
    s = _settings(bb, settings)
    prompts = []
    for request in requests:
        prompt = bb._prompt_for(request)
        if len(prompt) >= s["max_length"]:
            raise ItemError(
                f"request {request.id}: the prompt has {len(prompt)} tokens, not below "
                f"max_length {s['max_length']}"
            )
        prompts.append(prompt)
    rows = [g for g in range(len(requests)) for _ in range(k)]
    given = (settings or {}).get("batch_size")
    per_chunk = len(rows) if given is None else max(k, (int(given) // k) * k)
    generator = torch.Generator(device=_device(bb)).manual_seed(int(seed))
    groups: list[list[Rollout]] = [[] for _ in requests]
    was_training = bb.module.training
    bb.module.eval()
    try:
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            t0 = time.perf_counter()
            tokens, logps, stopped, min_new = _sample_chunk(
                bb, [prompts[g] for g in chunk], s, generator
            )
            sample_s = (time.perf_counter() - t0) / len(chunk)
            for g, toks, lp, stop in zip(chunk, tokens, logps, stopped):
                t1 = time.perf_counter()
                audio = _decode(bb, toks)
                groups[g].append(
                    Rollout(
                        request=requests[g],
                        group=g,
                        audio=audio,
                        actions={
                            "prompt": prompts[g],
                            "tokens": toks,
                            "temperature": float(s["temperature"]),
                            "top_k": int(s["top_k"] or 0),
                            "min_new_tokens": min_new,
                        },
                        old_logprob=lp,
                        n_actions=len(toks),
                        stopped=stop,
                        timings={"sample_s": sample_s, "decode_s": time.perf_counter() - t1},
                    )
                )
    finally:
        bb.module.train(was_training)
    return groups


def _sample_chunk(
    bb: NeuTTS, prompts: list[list[int]], s: dict[str, Any], generator: torch.Generator
) -> tuple[list[list[int]], list[float], list[bool], int]:
    """Sample every prompt's continuation together: the generated ids (end token included when
    reached), the summed log-probs of the sampled ids, whether each row stopped, and the
    ``min_new_tokens`` in force (capped by the room left, as ``generate`` does)."""
    import torch

    device = _device(bb)
    ids = bb.ids
    n = len(prompts)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((n, width), ids.pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    max_new = int(s["max_length"]) - width
    min_new = min(int(s["min_new_tokens"]), max_new)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    logp = torch.zeros(n, dtype=torch.float64, device=device)
    generated: list[list[int]] = [[] for _ in range(n)]
    with torch.no_grad():
        out = bb.module(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        for step in range(max_new):
            logits = sampling_logits(
                out.logits[:, -1, :],
                torch.tensor(step, device=device),
                s["temperature"],
                int(s["top_k"] or 0),
                min_new,
                ids.speech_end,
            )
            log_probs = torch.log_softmax(logits, dim=-1)
            token = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
            chosen = log_probs.gather(-1, token[:, None]).squeeze(-1)
            logp += torch.where(done, torch.zeros_like(chosen), chosen).double()
            for row in torch.nonzero(~done).flatten().tolist():
                generated[row].append(int(token[row]))
            done |= token == ids.speech_end
            if bool(done.all()) or step == max_new - 1:
                break
            token = torch.where(done, torch.full_like(token, ids.pad), token)
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], 1)
            positions = positions[:, -1:] + 1
            out = bb.module(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                cache=out.cache,
                use_cache=True,
            )
    stopped = [bool(g and g[-1] == ids.speech_end) for g in generated]
    return generated, [float(v) for v in logp.tolist()], stopped, min_new


def _decode(bb: NeuTTS, tokens: list[int]) -> np.ndarray:
    """Audio of the generated ids (empty when none is a speech code the codec can decode)."""
    codes = bb.ids.codes_from_ids(tokens)
    if not codes:
        return np.zeros(0, dtype=np.float32)
    try:
        return np.asarray(bb.decode_codes(codes), dtype=np.float32).reshape(-1)
    except ItemError:
        return np.zeros(0, dtype=np.float32)


def speech_logits(
    bb: NeuTTS, rollouts: Sequence[Rollout]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One teacher-forced pass over prompt + generated ids (right-padded): the LM's logits at the
    positions that predict the generated ids only, ``(n, L, V)``, the ids ``(n, L)`` and their mask
    ``(n, L)``. The LM head runs on those positions only, so prompt positions cannot enter."""
    import torch

    device = _device(bb)
    ids = bb.ids
    seqs, starts, lengths = [], [], []
    for r in rollouts:
        prompt, tokens = list(r.actions["prompt"]), list(r.actions["tokens"])
        seqs.append(prompt + tokens)
        starts.append(len(prompt))
        lengths.append(len(tokens))
    n, width, longest = len(seqs), max(len(q) for q in seqs), max(max(lengths), 1)
    input_ids = torch.full((n, width), ids.pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    steps = torch.arange(longest)
    valid = steps[None, :] < torch.tensor(lengths)[:, None]  # (n, L)
    # logits at position t predict id t + 1: generated id j sits at start + j
    pos = (torch.tensor(starts)[:, None] - 1 + steps[None, :]).clamp(max=width - 1)
    targets = input_ids.gather(1, (pos + 1).clamp(max=width - 1))
    hidden = bb.module.get_decoder()(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False
    ).last_hidden_state
    picked = hidden.gather(1, pos.to(device)[:, :, None].expand(-1, -1, hidden.shape[-1]))
    logits = bb.module.get_output_embeddings()(picked)
    return logits, targets.to(device), valid.to(device)


def _transform(bb: NeuTTS, rollouts: Sequence[Rollout], logits: torch.Tensor) -> torch.Tensor:
    """Each row's sampling transform (its own temperature / top-k / min_new_tokens)."""
    import torch

    steps = torch.arange(logits.shape[1], device=logits.device)
    rows = []
    for row, r in enumerate(rollouts):
        a = r.actions
        rows.append(
            sampling_logits(
                logits[row],
                steps,
                a["temperature"],
                a["top_k"],
                a["min_new_tokens"],
                bb.ids.speech_end,
            )
        )
    return torch.stack(rows)


def _chunks(bb: NeuTTS, rollouts: Sequence[Rollout]) -> list[Sequence[Rollout]]:
    step = max(1, int(bb.params.synthesis_batch_size))
    return [rollouts[i : i + step] for i in range(0, len(rollouts), step)]


def _summed(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Summed log-softmax of ``logits`` at ``targets`` over the valid positions (the chosen logit
    minus the log-sum-exp: no (n, L, V) log-softmax copy of a large vocabulary is kept)."""
    import torch

    logits = logits.float()
    chosen = logits.gather(-1, targets[:, :, None]).squeeze(-1)
    logp = chosen - torch.logsumexp(logits, dim=-1)
    return (logp * valid.to(logp.dtype)).sum(-1)


def rollout_logprobs(bb: NeuTTS, rollouts: Sequence[Rollout]) -> torch.Tensor:
    """Summed log-probs of each rollout's generated ids under the current LM and the rollout's
    sampling transform; differentiable; shape ``(n,)``."""
    import torch

    parts = []
    for chunk in _chunks(bb, rollouts):
        logits, targets, valid = speech_logits(bb, chunk)
        parts.append(_summed(_transform(bb, chunk, logits), targets, valid))
    return torch.cat(parts)


def rollout_stats(
    bb: NeuTTS, rollouts: Sequence[Rollout], with_kl: bool
) -> dict[str, torch.Tensor]:
    """From one pass: ``logprob`` (as :func:`rollout_logprobs`), ``entropy`` of the sampling
    distribution summed over the generated positions and, with ``with_kl``, ``kl``: the exact
    ``KL(policy || reference)`` over the vocabulary at those positions (both under the rollout's
    sampling transform), summed; all differentiable in the current LM, shape ``(n,)``."""
    import torch

    from ttsadapt.preference import entropy_of, token_kl

    logps, kls, ents = [], [], []
    for chunk in _chunks(bb, rollouts):
        logits, targets, valid = speech_logits(bb, chunk)
        shaped = _transform(bb, chunk, logits)
        logps.append(_summed(shaped, targets, valid))
        ents.append(entropy_of(shaped, valid))
        if with_kl:
            with reference_policy(bb):
                ref_logits, _, _ = speech_logits(bb, chunk)
                ref_shaped = _transform(bb, chunk, ref_logits)
            kls.append(token_kl(shaped, ref_shaped, valid))
    out = {"logprob": torch.cat(logps), "entropy": torch.cat(ents)}
    if with_kl:
        out["kl"] = torch.cat(kls)
    return out


def preference_scores(bb: NeuTTS, rollouts: Sequence[Rollout], seed: int) -> torch.Tensor:
    """DPO's implicit log-likelihood: summed log-probs of the generated ids under the LM's plain
    distribution (no temperature, no top-k); ``seed`` is unused (nothing is random here)."""
    import torch

    parts = []
    for chunk in _chunks(bb, rollouts):
        logits, targets, valid = speech_logits(bb, chunk)
        parts.append(_summed(logits, targets, valid))
    return torch.cat(parts)
