"""VoxCPM2's side of the preference protocol: Flow-GRPO rollouts and flow-matching DPO scores.

**Time convention (voxcpm's ``UnifiedCFM``).** ``t = 1`` is noise and ``t = 0`` is data: training
interpolates ``y = (1 - t)·x1 + t·z`` and regresses the velocity ``v = z - x1`` (``dy/dt``); the
Euler sampler walks ``t`` from 1 down to 0 on a swayed grid
``t_k = u_k + (cos(π/2·u_k) - 1 + u_k)`` (``u_k = 1 - k/N``, sway coefficient 1, so more steps sit
near the noise end) with a positive step ``h = t_k - t_{k+1}`` and ``x ← x - h·v``. The velocity is
the classifier-free-guided one, with CFG-Zero*: ``v = s·v_u + w·(v_c - s·v_u)`` where
``s = <v_c, v_u>/|v_u|²`` per patch, ``w`` = ``cfg_value``; the first ``max(1, ⌊0.04·(N+1)⌋)``
steps use ``v = 0`` (zero-init), so step 1 moves nothing.

**The SDE in that convention.** The score of ``y_t`` follows from the velocity:
``E[z | y] = y + (1 - t)·v`` and ``∇log p_t(y) = -E[z | y]/t = -(y + (1 - t)·v)/t``. The reverse-time
SDE with the same marginals as the ODE, noise scale ``σ_t``, integrated from ``t`` to ``t - h``, is
therefore (Flow-GRPO's form; their ``dt = -h`` because their time also runs from noise at 1 to
data at 0)::

    σ = a·sqrt(t / (1 - t))
    μ = x - h·[v + σ²/(2t)·(x + (1 - t)·v)]
    x' = μ + σ·sqrt(h)·ε,            ε ~ N(0, I)
    log p(x' | x) = Σ_dims log N(x'; μ, σ²·h)

computed in fp32 with ``v`` the guided velocity (CFG is part of the policy). ``a = 0`` gives
``μ = x - h·v``: voxcpm's Euler step exactly.

**Window.** The SDE replaces the Euler update on ``sde_steps`` (1-based Euler step numbers) of every
patch; the default is the two steps right after the zero-init step(s): steps 2 and 3 of 10, at
``t ≈ 0.956`` and ``0.909`` of the swayed grid, where ``a = 0.7`` (the default, Flow-GRPO's) gives
``σ ≈ 3.3`` and ``2.2`` and a step noise ``σ·sqrt(h) ≈ 0.71`` and ``0.52``. A zero-velocity step or
``t = 1`` (``σ`` infinite) is refused. Every other step is the plain Euler ODE step. One action = one SDE step of one patch (its
``D×P`` dimensions counted once); ``n_actions`` = patches × window length.

**Stop decision.** Greedy, as upstream (``argmax`` of the stop head, not before ``min_len``); it has
no log-probability in GRPO, so GRPO does not optimise length directly. ``stopped`` says whether a
rollout ended by the stop head (``False``: cut at the length cap).

**What is differentiated.** :func:`rollout_logprobs` recomputes the base and residual LM hidden
states in one teacher-forced causal pass over each rollout's prompt and sampled patches (right-padded,
so every real position sees exactly what it saw while sampling), then re-evaluates the guided
velocity at every recorded SDE step: gradients reach the LMs, the projections, the LocEnc (through
the patches fed back) and the LocDiT. :func:`rollout_stats` adds the exact KL to the reference
policy: policy and reference transitions share ``σ²h``, so a step's KL is ``|μ_θ - μ_ref|²/(2σ²h)``
(closed form, no sampled estimator). :func:`preference_scores` (Diffusion-DPO) is minus the sum over
patches of the conditional flow-matching loss (no CFG, voxcpm's log-normal time distribution) at
``t`` and noise drawn from the given seed, patch by patch (so two rollouts share ``t`` and noise on
their common patches), plus twice the log-likelihood of the stop head's decisions made after
``min_len`` (``continue`` … then ``stop``, or only ``continue`` at the cap): the factor 2 cancels
``dpo_beta_scale = 0.5``, so the stop head gets the token-DPO term with the full ``β``.

Batching: the ``requests × k`` rows are decoded together; prompts of different lengths are
right-padded in one prefill and each row then steps at its own position (its own RoPE angle and
attention mask in a per-row key/value cache), so a row's numbers do not depend on the other rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError

from ttsadapt.errors import ConfigError
from ttsadapt.types import SynthesisRequest

from . import VoxCPM2Synthesis

# --------------------------------------------------------------------------- settings


class FlowSampling(VoxCPM2Synthesis):
    """Decoding settings of ``sample_groups``: voxcpm2's own plus the SDE's."""

    noise_level: float = Field(0.7, ge=0.0, description="a in σ = a·sqrt(t/(1-t))")
    sde_steps: list[int] | None = Field(
        None, description="1-based Euler steps made stochastic (default: the 2 after zero-init)"
    )


@dataclass(frozen=True)
class Sampling:
    mode: str
    cfg_value: float
    timesteps: int
    min_len: int
    max_len: int
    max_len_ratio: float
    noise_level: float
    sde_steps: tuple[int, ...]


def zero_init_steps(timesteps: int) -> int:
    """How many first Euler steps voxcpm's CFG-Zero* solver runs with zero velocity."""
    return max(1, int((timesteps + 1) * 0.04))


def resolve_sampling(backbone: Any, settings: dict[str, Any] | None) -> Sampling:
    model = FlowSampling
    try:
        given = model.model_validate(dict(settings or {})).model_dump(exclude_unset=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(
            f"voxcpm2 sample_groups setting {where!r}: {err['msg']} (got {err.get('input')!r}); "
            f"known: {sorted(model.model_fields)}"
        ) from None
    if given.pop("int8", False):
        raise ConfigError(
            "voxcpm2 sample_groups: int8 = true is not allowed (rollouts must be scored by the "
            "same weights that sampled them)"
        )
    noise = given.pop("noise_level", 0.7)
    steps = given.pop("sde_steps", None)
    s = backbone.params.model_copy(update={k: v for k, v in given.items() if v is not None})
    zero = zero_init_steps(s.inference_timesteps)
    if steps is None:
        steps = [k for k in (zero + 1, zero + 2) if k <= s.inference_timesteps]
    steps = sorted(set(steps))
    bad = [k for k in steps if not zero < k <= s.inference_timesteps]
    if bad or not 1 <= len(steps) <= s.inference_timesteps - zero:
        raise ConfigError(
            f"voxcpm2 sample_groups: sde_steps={steps} must be Euler steps in "
            f"{zero + 1}..{s.inference_timesteps} (steps 1..{zero} have zero velocity and t = 1)"
        )
    return Sampling(
        mode=s.mode,
        cfg_value=float(s.cfg_value),
        timesteps=int(s.inference_timesteps),
        min_len=int(s.min_len),
        max_len=int(s.max_len),
        max_len_ratio=float(s.max_len_ratio),
        noise_level=float(noise),
        sde_steps=tuple(steps),
    )


# --------------------------------------------------------------------------- records


@dataclass
class FlowActions:
    """What one VoxCPM2 rollout sampled, enough to score it again.

    The prompt prefix (the four aligned tracks voxcpm feeds its LM), the generated patches
    ``[n, P, D]``, the conditioning patch of each generated patch ``[n, D, P]`` (the previous patch;
    the prompt's last feature for the first), and every SDE step: its patch, the latent before
    (model dtype) and after (fp32), ``t`` and ``h`` as used.
    """

    tokens: torch.Tensor  # [L] long
    feats: torch.Tensor  # [L, P, D]
    text_mask: torch.Tensor  # [L]
    audio_mask: torch.Tensor  # [L]
    patches: torch.Tensor  # [n, P, D]
    conds: torch.Tensor  # [n, D, P]
    patch_index: torch.Tensor  # [S] long
    x_before: torch.Tensor  # [S, D, P]
    x_after: torch.Tensor  # [S, D, P] fp32
    t: torch.Tensor  # [S] fp32
    h: torch.Tensor  # [S] fp32
    noise_level: float
    cfg_value: float
    min_len: int
    stopped: bool = False  # ended by the stop head (else cut at the length cap)


# --------------------------------------------------------------------------- math


def time_grid(timesteps: int, dtype: torch.dtype, device: Any = "cpu") -> list[tuple[Any, Any]]:
    """``(t, h)`` of each Euler step, as 0-dim tensors computed with voxcpm's own arithmetic
    (swayed linspace, then ``t ← t - h``, ``h ← t - t_span[k+1]``)."""
    span = torch.linspace(1, 0, timesteps + 1, device=device, dtype=dtype)
    span = span + 1.0 * (torch.cos(torch.pi / 2 * span) - 1 + span)
    t, h = span[0], span[0] - span[1]
    out = []
    for step in range(1, timesteps + 1):
        out.append((t, h))
        t = t - h
        if step < timesteps:
            h = t - span[step + 1]
    return out


def guided_velocity(
    cfm: Any, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cfg: float
) -> torch.Tensor:
    """voxcpm's CFG-Zero* velocity for rows ``x [B, D, P]``; ``t`` a scalar or ``[B]``."""
    b = x.shape[0]
    t_in = (t if t.dim() else t.expand(b)).to(x.dtype)
    out = cfm.estimator(
        torch.cat([x, x]),
        torch.cat([mu, torch.zeros_like(mu)]),
        torch.cat([t_in, t_in]),
        torch.cat([cond, cond]),
        torch.zeros(2 * b, device=x.device, dtype=x.dtype),
    )
    pos, neg = out[:b], out[b:]
    scale = cfm.optimized_scale(pos.reshape(b, -1), neg.reshape(b, -1)).view(b, 1, 1)
    return neg * scale + cfg * (pos - neg * scale)


def sde_mean_std(
    x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor, a: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the Flow-GRPO step from ``t`` to ``t - h`` in voxcpm's convention (fp32;
    ``t``/``h`` broadcastable to ``x``)."""
    x, v = x.float(), v.float()
    t, h = t.float(), h.float()
    sigma = a * torch.sqrt(t / (1 - t))
    mean = x - h * (v + sigma**2 / (2 * t) * (x + (1 - t) * v))
    return mean, sigma * torch.sqrt(h)


def gaussian_logprob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``Σ log N(x; mean, std²)`` over all but the first dimension."""
    std = std.expand_as(mean)
    lp = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


# --------------------------------------------------------------------------- LM


def _scale_emb(module: Any) -> float:
    cfg = module.config.lm_config
    return float(cfg.scale_emb) if getattr(cfg, "use_mup", False) else 1.0


def lm_inputs(module: Any, tokens, feats, text_mask, audio_mask) -> tuple[Any, Any]:
    """voxcpm's LM input embedding of packed tracks ``[B, T]``/``[B, T, P, D]``, and the LocEnc
    embedding of the features."""
    feat_embed = module.enc_to_lm_proj(module.feat_encoder(feats))
    text_embed = module.base_lm.embed_tokens(tokens) * _scale_emb(module)
    combined = text_mask.unsqueeze(-1) * text_embed + audio_mask.unsqueeze(-1) * feat_embed
    return combined, feat_embed


def lm_forward(module: Any, tokens, feats, text_mask, audio_mask):
    """The causal pass of both LMs over packed tracks: ``(lm_hidden, residual_hidden, kv, res_kv)``
    at every position, as voxcpm's prefill computes them (FSQ on audio positions)."""
    dtype = next(module.base_lm.parameters()).dtype
    text_mask, audio_mask = text_mask.to(dtype), audio_mask.to(dtype)
    combined, feat_embed = lm_inputs(module, tokens, feats.to(dtype), text_mask, audio_mask)
    enc, kv = module.base_lm(inputs_embeds=combined, is_causal=True)
    enc = module.fsq_layer(enc) * audio_mask.unsqueeze(-1) + enc * text_mask.unsqueeze(-1)
    res_in = module.fusion_concat_proj(
        torch.cat((enc, audio_mask.unsqueeze(-1) * feat_embed), dim=-1)
    )
    res, res_kv = module.residual_lm(inputs_embeds=res_in, is_causal=True)
    return enc, res, kv, res_kv


def lm_step(lm: Any, x: torch.Tensor, pos: torch.Tensor, cache: list[tuple[Any, Any]]):
    """One decoding step of a MiniCPM LM for rows ``x [B, H]``, each at its own position ``pos``
    (its RoPE angle, its cache slot, its causal mask) — voxcpm's ``forward_step`` allows one
    position for the whole batch only."""
    from voxcpm.modules.minicpm4.model import apply_rotary_pos_emb

    b = x.shape[0]
    rows = torch.arange(b, device=x.device)
    length = cache[0][0].shape[2]
    mask = (torch.arange(length, device=x.device)[None, :] <= pos[:, None])[:, None, None, :]
    rope = None
    if lm.rope_emb is not None:
        cos, sin = lm.rope_emb(pos)
        rope = (cos[:, None, None, :], sin[:, None, None, :])
    for layer, (keys, values) in zip(lm.layers, cache):
        attn = layer.self_attn
        scale = layer.scale_depth / math.sqrt(layer.num_hidden_layers) if layer.use_mup else 1.0
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(b, 1, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, 1, attn.num_key_value_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, 1, attn.num_key_value_heads, attn.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rotary_pos_emb(q, k, *rope)
        keys[rows, :, pos] = k[:, :, 0]
        values[rows, :, pos] = v[:, :, 0]
        out = torch.nn.functional.scaled_dot_product_attention(
            q.contiguous(), keys, values, attn_mask=mask, enable_gqa=True
        )
        x = x + attn.o_proj(out.transpose(1, 2).reshape(b, -1)) * scale
        x = x + layer.mlp(layer.post_attention_layernorm(x)) * scale
    return lm.norm(x)


def _cache(kv: list[tuple[Any, Any]], rows: torch.Tensor, length: int):
    """Per-row key/value buffers ``[B, kv_heads, length, d]`` filled with the prefill's keys."""
    out = []
    for k, v in kv:
        keys = k.new_zeros((len(rows), k.shape[1], length, k.shape[3]))
        values = torch.zeros_like(keys)
        keys[:, :, : k.shape[2]] = k[rows]
        values[:, :, : v.shape[2]] = v[rows]
        out.append((keys, values))
    return out


def stop_logits(module: Any, lm_hidden: torch.Tensor) -> torch.Tensor:
    return module.stop_head(module.stop_actn(module.stop_proj(lm_hidden)))


# --------------------------------------------------------------------------- prompts


@dataclass
class Prefix:
    tokens: torch.Tensor
    feats: torch.Tensor
    text_mask: torch.Tensor
    audio_mask: torch.Tensor
    cap: int  # length cap in patches (upstream: min(target tokens · ratio + 10, max_len))
    context: torch.Tensor  # prompt patches decoded before the output (continuation), then cut


def _prompt_feats(backbone: Any, req: SynthesisRequest, pad_left: bool) -> torch.Tensor:
    from ttsadapt.audio import resample, to_mono_float

    module = backbone.module
    sr = int(req.prompt_sample_rate or module._encode_sample_rate)
    audio = resample(to_mono_float(np.asarray(req.prompt_audio)), sr, module._encode_sample_rate)
    return backbone._encode_audio(audio, pad_left=pad_left)


def build_prefix(backbone: Any, req: SynthesisRequest, s: Sampling) -> Prefix:
    """The packed prompt voxcpm's ``generate`` builds for the request's mode (same fall-backs as
    ``synthesize``): ``[ref_start, ref…, ref_end]? text… audio_start [prompt audio…]?``."""
    module = backbone.module
    mode = backbone._request_mode(req, s.mode)
    target = " ".join(req.text.split())
    text = backbone._model_text(target, req.language)
    ref = cont = None
    if mode in ("clone", "clone+continuation"):
        ref = _prompt_feats(backbone, req, pad_left=False)
    if mode in ("continuation", "clone+continuation"):
        cont = _prompt_feats(backbone, req, pad_left=True)
        text = backbone._model_text(req.prompt_text or "", req.language) + " " + target
        target_ids = backbone._text_ids(target)
    else:
        target_ids = backbone._text_ids(text)
    ids = [*backbone._text_ids(text), module.audio_start_token]
    p, d = module.patch_size, module.audio_vae.latent_dim
    i32 = torch.int32
    tokens = [torch.tensor(ids, dtype=i32)]
    feats = [torch.zeros((len(ids), p, d))]
    t_mask, a_mask = [torch.ones(len(ids), dtype=i32)], [torch.zeros(len(ids), dtype=i32)]
    if ref is not None:
        r_tok, r_feat, r_t, r_a = module._make_ref_prefix(ref, "cpu")
        tokens.insert(0, r_tok)
        feats.insert(0, r_feat)
        t_mask.insert(0, r_t.cpu())
        a_mask.insert(0, r_a.cpu())
    context = torch.zeros((0, p, d))
    if cont is not None:
        n = cont.shape[0]
        tokens.append(torch.zeros(n, dtype=i32))
        feats.append(cont)
        t_mask.append(torch.zeros(n, dtype=i32))
        a_mask.append(torch.ones(n, dtype=i32))
        context = cont[-min(3, n) :] if n else context
    cap = min(int(len(target_ids) * s.max_len_ratio + 10), s.max_len)
    return Prefix(
        torch.cat(tokens).long(),
        torch.cat(feats).float(),
        torch.cat(t_mask),
        torch.cat(a_mask),
        cap,
        context,
    )


def _pad_stack(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    out = rows[0].new_zeros((len(rows), length, *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


# --------------------------------------------------------------------------- sampling


def decode_rows(module: Any, rows: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[np.ndarray]:
    """Audio of ``(patches [n, P, D], context [c, P, D])`` rows: the context (continuation) is
    decoded in front and cut, as voxcpm's ``generate`` does; rows of one shape share one codec
    call."""
    p = module.patch_size
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, (patches, context) in enumerate(rows):
        shapes.setdefault((len(patches), len(context)), []).append(i)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(rows)
    for (_, n_ctx), idx in shapes.items():
        seqs = [torch.cat([rows[i][1].to(rows[i][0].dtype), rows[i][0]]) for i in idx]
        latent = torch.stack(seqs).permute(0, 3, 1, 2).flatten(2)  # [b, D, T·P]
        audio = module.audio_vae.decode(latent.float().to(module.device))
        audio = audio[..., p * module._decode_chunk_size * n_ctx :].reshape(len(idx), -1)
        audio = np.clip(audio.detach().float().cpu().numpy(), -1.0, 1.0).astype(np.float32)
        for j, i in enumerate(idx):
            out[i] = audio[j]
    return out


@torch.no_grad()
def sample_groups(
    backbone: Any,
    requests: Sequence[SynthesisRequest],
    k: int,
    settings: dict[str, Any] | None,
    seed: int,
) -> list[list[Any]]:
    """``k`` SDE rollouts per request, all ``len(requests)·k`` rows decoded in one batch."""
    from ttsadapt.preference import Rollout

    if k < 1 or not requests:
        raise ConfigError(f"voxcpm2 sample_groups: need k >= 1 and requests (got k={k})")
    s = resolve_sampling(backbone, settings)
    module = backbone._require_loaded()
    if module.feat_decoder.mean_mode:
        raise ConfigError(
            "voxcpm2 sample_groups: a mean-mode LocDiT (dit_mean_mode) is not supported"
        )
    was_training = module.training
    module.eval()
    started = time.perf_counter()
    backbone.last_synthesis_notes = []
    try:
        prefixes = [build_prefix(backbone, req, s) for req in requests]
        rows = _sample_rows(module, prefixes, k, s, seed)
        sample_s = time.perf_counter() - started
        audio = decode_rows(
            module, [(a.patches, prefixes[i // k].context) for i, (a, _, _) in enumerate(rows)]
        )
        out: list[list[Any]] = []
        for g, req in enumerate(requests):
            group = []
            for j in range(k):
                actions, logp, stopped = rows[g * k + j]
                group.append(
                    Rollout(
                        request=req,
                        group=g,
                        audio=audio[g * k + j],
                        actions=actions,
                        old_logprob=float(logp),
                        n_actions=int(actions.x_before.shape[0]),
                        stopped=stopped,
                    )
                )
            out.append(group)
    finally:
        module.train(was_training)
    total = time.perf_counter() - started
    n = len(requests) * k
    for group in out:
        for r in group:
            r.timings = {"sample_s": sample_s / n, "decode_s": (total - sample_s) / n}
    return out


def _sample_rows(module: Any, prefixes: list[Prefix], k: int, s: Sampling, seed: int):
    device = module.device
    dtype = next(module.base_lm.parameters()).dtype
    cfm = module.feat_decoder
    p, d = module.patch_size, module.audio_vae.latent_dim
    lengths = torch.tensor([len(x.tokens) for x in prefixes])
    width = int(lengths.max())
    enc, res, kv, res_kv = lm_forward(
        module,
        _pad_stack([x.tokens for x in prefixes], width).to(device),
        _pad_stack([x.feats for x in prefixes], width).to(device),
        _pad_stack([x.text_mask for x in prefixes], width).to(device),
        _pad_stack([x.audio_mask for x in prefixes], width).to(device),
    )
    group = torch.arange(len(prefixes)).repeat_interleave(k)
    b = len(group)
    last = (lengths - 1)[group]
    lm_hidden, res_hidden = enc[group, last], res[group, last]
    cond = _pad_stack([x.feats for x in prefixes], width)[group, last].to(device, dtype)
    cond = cond.transpose(1, 2).contiguous()  # [B, D, P]
    caps = torch.tensor([x.cap for x in prefixes])[group]
    horizon = int(caps.max())
    cache = _cache(kv, group.to(device), width + horizon + 1)
    res_cache = _cache(res_kv, group.to(device), width + horizon + 1)
    pos = lengths[group].to(device)

    gen_z = torch.Generator().manual_seed(seed)
    gen_eps = torch.Generator().manual_seed(seed + 0x5DE)
    grid = time_grid(s.timesteps, dtype, device)
    zero = zero_init_steps(s.timesteps)
    window = set(s.sde_steps)

    patches, conds, records = [], [], []  # per patch index: [B, P, D], [B, D, P], SDE steps
    active = torch.ones(b, dtype=torch.bool)
    n_patches = torch.zeros(b, dtype=torch.long)
    stopped = torch.zeros(b, dtype=torch.bool)
    for i in range(horizon):
        mu = torch.cat((module.lm_to_dit_proj(lm_hidden), module.res_to_dit_proj(res_hidden)), -1)
        x = torch.randn((b, d, p), generator=gen_z, dtype=dtype).to(device)
        for step, (t, h) in enumerate(grid, start=1):
            v = (
                torch.zeros_like(x)
                if step <= zero
                else guided_velocity(cfm, x, mu, t, cond, s.cfg_value)
            )
            if step in window:
                mean, std = sde_mean_std(x, v, t, h, s.noise_level)
                eps = torch.randn((b, d, p), generator=gen_eps).to(device)
                after = mean + std * eps
                lp = gaussian_logprob(after, mean, std) if s.noise_level > 0 else mean.new_zeros(b)
                records.append((i, x.cpu(), after.cpu(), float(t), float(h), lp.cpu()))
                x = after.to(dtype)
            else:
                x = x - h * v
        conds.append(cond.cpu())
        pred = x.transpose(1, 2)  # [B, P, D]
        patches.append(pred.cpu())
        n_patches[active] += 1
        stop = stop_logits(module, lm_hidden).argmax(-1).cpu().bool()
        ended = active & (((i > s.min_len) & stop) | (i + 1 >= caps))
        stopped |= active & (i > s.min_len) & stop
        active &= ~ended
        if not active.any():
            break
        embed = module.enc_to_lm_proj(module.feat_encoder(pred.unsqueeze(1)))[:, 0]
        lm_hidden = module.fsq_layer(lm_step(module.base_lm, embed, pos, cache))
        fused = module.fusion_concat_proj(torch.cat((lm_hidden, embed), dim=-1))
        res_hidden = lm_step(module.residual_lm, fused, pos, res_cache)
        pos = pos + 1
        cond = pred.transpose(1, 2).contiguous()

    out = []
    for r in range(b):
        n = int(n_patches[r])
        steps = [rec for rec in records if rec[0] < n]
        prefix = prefixes[int(group[r])]
        actions = FlowActions(
            tokens=prefix.tokens,
            feats=prefix.feats,
            text_mask=prefix.text_mask,
            audio_mask=prefix.audio_mask,
            patches=torch.stack([patches[i][r] for i in range(n)]),
            conds=torch.stack([conds[i][r] for i in range(n)]),
            patch_index=torch.tensor([rec[0] for rec in steps], dtype=torch.long),
            x_before=torch.stack([rec[1][r] for rec in steps]),
            x_after=torch.stack([rec[2][r] for rec in steps]),
            t=torch.tensor([rec[3] for rec in steps], dtype=torch.float32),
            h=torch.tensor([rec[4] for rec in steps], dtype=torch.float32),
            noise_level=s.noise_level,
            cfg_value=s.cfg_value,
            min_len=s.min_len,
            stopped=bool(stopped[r]),
        )
        logp = float(sum(float(rec[5][r]) for rec in steps))
        out.append((actions, logp, bool(stopped[r])))
    return out


# --------------------------------------------------------------------------- scoring


def _actions(rollouts: Sequence[Any]) -> list[FlowActions]:
    acts = [r.actions for r in rollouts]
    bad = [i for i, a in enumerate(acts) if not isinstance(a, FlowActions)]
    if bad:
        raise ConfigError(
            f"voxcpm2: rollout {bad[0]} was not sampled by voxcpm2's sample_groups (its actions "
            f"are {type(acts[bad[0]]).__name__}, expected FlowActions)"
        )
    return acts


def teacher_forced(module: Any, acts: Sequence[FlowActions]) -> tuple[list[Any], list[Any]]:
    """One causal pass over every rollout's prompt + sampled patches (all but the last, which
    nothing conditions on): per rollout the DiT conditioning ``[n, 2·H_dit]`` and the LM hidden
    state ``[n, H]`` that produced each patch."""
    device = module.device
    seqs = []
    for a in acts:
        extra = a.patches[:-1].float()
        m = len(extra)
        seqs.append(
            (
                torch.cat([a.tokens, torch.zeros(m, dtype=torch.long)]),
                torch.cat([a.feats, extra]),
                torch.cat([a.text_mask, torch.zeros(m, dtype=a.text_mask.dtype)]),
                torch.cat([a.audio_mask, torch.ones(m, dtype=a.audio_mask.dtype)]),
            )
        )
    width = max(len(x[0]) for x in seqs)
    enc, res, _, _ = lm_forward(
        module, *(_pad_stack([x[i] for x in seqs], width).to(device) for i in range(4))
    )
    mus, hidden = [], []
    for r, a in enumerate(acts):
        at = torch.arange(len(a.patches), device=device) + len(a.tokens) - 1
        lm_h, res_h = enc[r, at], res[r, at]
        mus.append(torch.cat((module.lm_to_dit_proj(lm_h), module.res_to_dit_proj(res_h)), -1))
        hidden.append(lm_h)
    return mus, hidden


def _eval_mode(module: Any):
    class _Eval:
        def __enter__(self):
            self.was = module.training
            module.eval()

        def __exit__(self, *exc):
            module.train(self.was)

    return _Eval()


def _step_gaussians(module: Any, acts: Sequence[FlowActions]):
    """Every recorded SDE step of ``acts`` re-evaluated under the module's current parameters:
    ``(owner [S], mean [S, D, P], std [S, 1, 1], after [S, D, P])`` (fp32), or None when no
    step was recorded (then a zero that keeps the graph)."""
    device = module.device
    dtype = next(module.base_lm.parameters()).dtype
    mus, _ = teacher_forced(module, acts)
    owner = torch.cat(
        [torch.full((len(a.patch_index),), i, dtype=torch.long) for i, a in enumerate(acts)]
    ).to(device)
    if len(owner) == 0:
        return None, 0.0 * sum(m.sum() for m in mus)
    if any(a.noise_level <= 0 for a in acts):
        raise ConfigError(
            "voxcpm2: rollouts sampled with noise_level 0 have no log-probability (sample with "
            "noise_level > 0)"
        )
    mu = torch.cat([m[a.patch_index.to(device)] for m, a in zip(mus, acts)])
    cond = torch.cat([a.conds[a.patch_index] for a in acts]).to(device, dtype)
    x = torch.cat([a.x_before for a in acts]).to(device, dtype)
    after = torch.cat([a.x_after for a in acts]).to(device)
    t = torch.cat([a.t for a in acts]).to(device)
    h = torch.cat([a.h for a in acts]).to(device)
    cfg = torch.cat([torch.full((len(a.t),), a.cfg_value) for a in acts]).to(device, dtype)
    noise = torch.cat([torch.full((len(a.t),), a.noise_level) for a in acts]).to(device)
    v = guided_velocity(module.feat_decoder, x, mu, t.to(dtype), cond, cfg.view(-1, 1, 1))
    mean, std = sde_mean_std(x, v, t.view(-1, 1, 1), h.view(-1, 1, 1), noise.view(-1, 1, 1))
    return (owner, mean, std, after), None


def rollout_logprobs(backbone: Any, rollouts: Sequence[Any]) -> torch.Tensor:
    """``(n,)`` summed SDE log-probs of each rollout under the current parameters."""
    module = backbone._require_loaded()
    acts = _actions(rollouts)
    with _eval_mode(module):
        steps, empty = _step_gaussians(module, acts)
        total = torch.zeros(len(acts), device=module.device)
        if steps is None:
            return total + empty
        owner, mean, std, after = steps
        return total.index_add(0, owner, gaussian_logprob(after, mean, std))


def rollout_stats(backbone: Any, rollouts: Sequence[Any], with_kl: bool) -> dict[str, torch.Tensor]:
    """``logprob`` (as :func:`rollout_logprobs`), ``entropy`` (exact: of the Gaussian SDE steps,
    ``Σ ½·log(2πe·σ²h)`` per dimension, which no parameter moves) and, with ``with_kl``, the exact
    ``KL(policy || reference)`` of the recorded steps: both transitions share ``σ²h``, so each
    step's KL is ``|μ_θ - μ_ref|² / (2σ²h)`` (closed form, no sampled estimator); all ``(n,)``,
    summed per rollout; ``logprob`` and ``kl`` differentiable."""
    from ttsadapt.preference import reference_policy

    module = backbone._require_loaded()
    acts = _actions(rollouts)
    zeros = torch.zeros(len(acts), device=module.device)
    with _eval_mode(module):
        steps, empty = _step_gaussians(module, acts)
    if steps is None:
        out = {"logprob": zeros + empty, "entropy": zeros}
        if with_kl:
            out["kl"] = zeros + empty
        return out
    owner, mean, std, after = steps
    per_dim = 0.5 * torch.log(2 * math.pi * math.e * std**2).expand_as(mean)
    out = {
        "logprob": zeros.index_add(0, owner, gaussian_logprob(after, mean, std)),
        "entropy": zeros.index_add(0, owner, per_dim.flatten(1).sum(1)).detach(),
    }
    if with_kl:
        with reference_policy(backbone):
            ref_module = backbone._require_loaded()
            with _eval_mode(ref_module):
                (_, ref_mean, _, _), _ = _step_gaussians(ref_module, acts)
        kl = ((mean - ref_mean.detach()) ** 2 / (2 * std**2)).flatten(1).sum(1)
        out["kl"] = zeros.index_add(0, owner, kl)
    return out


def preference_scores(backbone: Any, rollouts: Sequence[Any], seed: int) -> torch.Tensor:
    """``(n,)``: minus the summed per-patch flow-matching loss at seeded ``t``/noise, plus twice the
    log-likelihood of the stop decisions after ``min_len`` (see the module docstring)."""
    module = backbone._require_loaded()
    acts = _actions(rollouts)
    device = module.device
    dtype = next(module.base_lm.parameters()).dtype
    longest = max(len(a.patches) for a in acts)
    gen = torch.Generator().manual_seed(seed)
    t_all, z_all = [], []
    p, d = acts[0].patches.shape[1:]
    for _ in range(longest):  # patch by patch: rollouts share t and noise on common patches
        t_all.append(torch.sigmoid(torch.randn(1, generator=gen) - 0.4))
        z_all.append(torch.randn((d, p), generator=gen))
    t_all = torch.cat(t_all)
    z_all = torch.stack(z_all)
    with _eval_mode(module):
        mus, hidden = teacher_forced(module, acts)
        scores = []
        for a, mu, lm_h in zip(acts, mus, hidden):
            n = len(a.patches)
            x1 = a.patches.transpose(1, 2).to(device, dtype)
            t = t_all[:n].to(device, dtype).view(-1, 1, 1)
            z = z_all[:n].to(device, dtype)
            y = (1 - t) * x1 + t * z
            u = module.feat_decoder.estimator(
                y,
                mu,
                t.view(-1),
                a.conds.to(device, dtype),
                torch.zeros(n, device=device, dtype=dtype),
            )
            flow = ((u.float() - (z - x1).float()) ** 2).flatten(1).mean(1).sum()
            decided = torch.arange(min(a.min_len + 1, n), n)  # decisions voxcpm acted on
            labels = (decided == n - 1).long() * int(a.stopped)
            logp_stop = torch.log_softmax(stop_logits(module, lm_h).float(), -1)
            stop = logp_stop[decided.to(device), labels.to(device)].sum()
            scores.append(-flow + 2.0 * stop)
        return torch.stack(scores)
