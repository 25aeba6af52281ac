"""The preference protocol shared by GRPO and DPO, and the small pure functions of their losses.

A backbone that can be trained from preferences implements :class:`PreferenceBackbone` (duck-typed:
no base class): it samples ``k`` rollouts per request in one batched call, and it scores rollouts
under its current parameters, differentiably. The token LM (NeuTTS) scores the sampled speech tokens;
a flow-matching decoder scores SDE steps (GRPO) or flow-matching losses (DPO). The methods ``grpo`` and
``dpo`` only talk to this protocol, so they work with any backbone that implements it.

The reference policy (KL term, DPO's reference) is the starting model: the same module with its LoRA
adapter switched off, or, for full-parameter training, a frozen copy kept by :func:`keep_reference`
and swapped in by :func:`reference_policy`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import PluginError
from .types import SynthesisRequest

if TYPE_CHECKING:  # torch is imported where it is used: plugin discovery stays light
    import torch

PROTOCOL_METHODS = ("sample_groups", "rollout_logprobs", "preference_scores")
_REFERENCE_ATTR = "_ttsadapt_reference_module"


@dataclass
class Rollout:
    """One sampled answer to one request, with what is needed to score it again later."""

    request: SynthesisRequest  # the prompt it answers
    group: int  # index of its request in the batch given to sample_groups
    audio: np.ndarray  # mono float32 at backbone.sample_rate
    actions: Any  # backbone-private record of what was sampled (token ids / SDE trajectory)
    old_logprob: float  # sum of log-probs of the sampled actions at sampling time
    n_actions: int  # how many actions were sampled (speech tokens / SDE steps)
    stopped: bool  # True when ended by the stop decision, False when cut at the length cap
    timings: dict[str, float] = field(default_factory=dict)  # optional extras


@runtime_checkable
class PreferenceBackbone(Protocol):
    """What ``grpo`` and ``dpo`` need from a backbone (see the module docstring)."""

    dpo_beta_scale: float  # 1.0 for token LMs; 0.5 for the Diffusion-DPO form (flow)

    def sample_groups(
        self,
        requests: Sequence[SynthesisRequest],
        k: int,
        settings: dict[str, Any] | None,
        seed: int,
    ) -> list[list[Rollout]]:
        """``k`` rollouts per request, generated in one batched call; deterministic for ``seed``."""
        ...

    def rollout_logprobs(self, rollouts: Sequence[Rollout]) -> torch.Tensor:
        """Shape ``(n,)``: the sum of log-probs of each rollout's sampled actions under the current
        parameters, differentiable, with exactly the sampling transform of the rollout."""
        ...

    def preference_scores(self, rollouts: Sequence[Rollout], seed: int) -> torch.Tensor:
        """Shape ``(n,)``: DPO's differentiable implicit log-likelihood of each rollout (token LM:
        summed log-probs of the speech tokens; flow: minus the summed flow-matching loss, with time
        steps and noise drawn from ``seed``)."""
        ...


def require_preference(backbone: Any, method: str) -> PreferenceBackbone:
    """``backbone`` when it implements the protocol, else a :class:`PluginError` naming it and
    what it lacks."""
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(backbone, m, None))]
    if not hasattr(backbone, "dpo_beta_scale"):
        missing.append("dpo_beta_scale")
    if missing:
        name = getattr(backbone, "name", type(backbone).__name__)
        raise PluginError(
            f"method '{method}' needs a backbone that implements the preference protocol "
            f"(ttsadapt.preference.PreferenceBackbone); backbone '{name}' lacks "
            f"{', '.join(missing)}"
        )
    return backbone


# --------------------------------------------------------------------------- reference policy


def _lora_layers(module: Any) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def keep_reference(backbone: Any, force: bool = False) -> bool:
    """Prepare the reference policy before training: nothing for a LoRA-adapted module (the
    adapter is switched off instead) unless ``force`` (the adapter itself is the starting point,
    e.g. a fine-tuned adapter that preference training goes on with); a frozen deep copy of the
    module otherwise. Returns True when a copy was made."""
    module = backbone.module
    if _lora_layers(module) and not force:
        return False
    _detach_weight_norm(module)
    frozen = copy.deepcopy(module)
    frozen.eval()
    for param in frozen.parameters():
        param.requires_grad_(False)
    setattr(backbone, _REFERENCE_ATTR, frozen)
    return True


def _detach_weight_norm(module: Any) -> None:
    """Modules under torch's original ``weight_norm`` keep the weight their last forward computed,
    with its autograd graph, and such a tensor cannot be deep-copied; recompute it without one (the
    next forward computes it again from ``weight_g``/``weight_v``, as always)."""
    import torch
    from torch.nn.utils.weight_norm import WeightNorm

    with torch.no_grad():
        for sub in module.modules():
            for hook in sub._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm):
                    setattr(sub, hook.name, hook.compute_weight(sub))


def drop_reference(backbone: Any) -> None:
    """Forget the frozen copy :func:`keep_reference` made (frees its memory)."""
    if hasattr(backbone, _REFERENCE_ATTR):
        delattr(backbone, _REFERENCE_ATTR)


@contextlib.contextmanager
def reference_policy(backbone: Any) -> Iterator[Any]:
    """Within the block, ``backbone`` acts as the starting model: its module is the frozen copy of
    :func:`keep_reference` when there is one, else the same module with its LoRA layers switched
    off (PEFT's ``disable_adapter`` for injected adapters and for a ``PeftModel``). Gradients are
    off inside. Raises :class:`PluginError` when there is neither."""
    import torch

    module = backbone.module
    frozen = getattr(backbone, _REFERENCE_ATTR, None)
    if frozen is not None:
        backbone.module = frozen
        try:
            with torch.no_grad():
                yield backbone
        finally:
            backbone.module = module
        return
    layers = _lora_layers(module)
    if not layers:
        name = getattr(backbone, "name", type(backbone).__name__)
        raise PluginError(
            f"backbone '{name}' has no reference policy: its module has no LoRA adapter and "
            "keep_reference(backbone) was not called before training"
        )
    from peft import PeftModel

    if isinstance(module, PeftModel):
        with module.disable_adapter(), torch.no_grad():
            yield backbone
        return
    previous = [not layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        with torch.no_grad():
            yield backbone
    finally:
        for layer, was_on in zip(layers, previous):
            layer.enable_adapters(was_on)  # also marks the adapter trainable again


# --------------------------------------------------------------------------- GRPO


@dataclass
class Advantages:
    """Group-relative advantages: ``values[i]`` for rollout ``i`` (0 where its group is skipped)."""

    values: np.ndarray  # (n,) float64
    used: np.ndarray  # (n,) bool: the rollout's group has spread and takes part in the update
    skipped_groups: int  # groups whose rewards did not spread (no learning signal)
    groups: int


def group_advantages(
    rewards: Sequence[float],
    groups: Sequence[int],
    normalize_std: bool = True,
    min_spread: float = 1e-6,
) -> Advantages:
    """``r - mean(group)`` (divided by the group's std when ``normalize_std``); a group whose
    rewards spread by less than ``min_spread`` (max - min) gives no signal and is skipped."""
    r = np.asarray(rewards, dtype=np.float64)
    g = np.asarray(groups)
    values = np.zeros_like(r)
    used = np.zeros(r.shape, dtype=bool)
    skipped = 0
    labels = list(dict.fromkeys(g.tolist()))
    for label in labels:
        idx = np.flatnonzero(g == label)
        block = r[idx]
        if block.size < 2 or float(block.max() - block.min()) < min_spread:
            skipped += 1
            continue
        adv = block - block.mean()
        if normalize_std:
            adv = adv / (block.std() + 1e-8)
        values[idx] = adv
        used[idx] = True
    return Advantages(values=values, used=used, skipped_groups=skipped, groups=len(labels))


def grpo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    n_actions: torch.Tensor,
    clip_eps: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's policy loss on sequence sums of log-probs, averaged over rollouts.

    On-policy (``clip_eps`` None): ``-exp(logp - logp.detach()) * A / n`` per rollout: the ratio
    is exactly 1 and the gradient is GRPO's per-action ``-A/n * grad log p(a_t)`` summed over the
    rollout's ``n`` actions. Clipped (batches reused): the sequence-level ratio
    ``exp((logp - old)/n)`` (the geometric mean of the per-action ratios, as GSPO), in PPO's
    ``-min(r A, clip(r, 1-eps, 1+eps) A)``. Returns the loss and ``{"ratio_mean", "clip_frac"}``.
    """
    import torch

    n = n_actions.to(logp.dtype).clamp(min=1)
    if clip_eps is None:
        ratio = torch.exp(logp - logp.detach())
        loss = -(ratio * advantages / n).mean()
        return loss, {"ratio_mean": float(ratio.detach().mean()), "clip_frac": 0.0}
    ratio = torch.exp((logp - old_logp) / n)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = -torch.minimum(ratio * advantages, clipped * advantages).mean()
    outside = ((ratio - 1.0).abs() > clip_eps).to(torch.float32)
    return loss, {
        "ratio_mean": float(ratio.detach().mean()),
        "clip_frac": float(outside.mean()),
    }


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact ``KL(policy || reference)`` over the vocabulary at every masked position, summed per
    row: ``sum_v p_v (log p_v - log q_v)``. Both are log-softmaxed here (pass the same transform
    of both, e.g. divided by the sampling temperature). Never overflows, unlike the sampled k3
    estimator; differentiable in ``logits``."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    logq = torch.log_softmax(ref_logits.float(), dim=-1)
    p = logp.exp()
    # 0 * (-inf) would be NaN where the policy masks a token out: those terms are 0
    diff = torch.where(p > 0, logp - logq.clamp(min=-1e30), torch.zeros_like(logp))
    kl = (p * diff).sum(-1)
    return (kl * mask.to(kl.dtype)).sum(-1)


def entropy_of(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of ``logits`` at the masked positions, summed per row."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)
    return (ent * mask.to(ent.dtype)).sum(-1)


# --------------------------------------------------------------------------- DPO


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    beta_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``-log sigmoid(beta*scale*((pi_c - pi_r) - (ref_c - ref_r)))`` averaged over pairs.

    Token LM (``beta_scale`` 1): the scores are summed log-probs. Diffusion-DPO (``beta_scale``
    0.5): the scores are minus flow-matching losses, so this is ``-log sigmoid(-beta/2 ((L_w -
    L_w,ref) - (L_l - L_l,ref)))``. Returns the loss and the implicit accuracy (share of pairs whose
    margin is positive), the mean margin and the implicit rewards."""
    import torch

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    logits = beta * beta_scale * margin
    loss = -torch.nn.functional.logsigmoid(logits).mean()
    with torch.no_grad():
        stats = {
            "implicit_accuracy": float((margin > 0).to(torch.float32).mean()),
            "margin_mean": float(margin.mean()),
            "reward_chosen": float((beta * (policy_chosen - ref_chosen)).mean()),
            "reward_rejected": float((beta * (policy_rejected - ref_rejected)).mean()),
        }
    return loss, stats


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std of finite ``values`` (NaN, NaN when none)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())
