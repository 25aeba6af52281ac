"""``grpo``: Group Relative Policy Optimisation with ASR / speaker / quality rewards.

Each step samples ``k`` rollouts for each of ``prompts_per_step`` training sentences in one batched
call (:meth:`sample_groups` of the preference protocol, :mod:`ttsadapt.preference`), scores them
with the reward (:mod:`ttsadapt.rewards`; one metric call for all of them), turns the rewards into
group-relative advantages (``r - mean``, divided by the group's std with ``normalize_std``; a group
whose rewards do not spread is skipped and counted) and takes one optimizer step on
``-exp(logp - logp.detach()) * A / n`` (``reuse`` = 1: on-policy, the ratio is exactly 1) or, with
``reuse`` > 1 passes over the same rollouts, on PPO's clipped ratio (``clip_eps``). ``kl_coef`` > 0
adds the KL to the starting model, exact over the vocabulary where the backbone offers it
(``rollout_stats``). The backbone's module runs in eval mode throughout (dropout off).

Trains a LoRA adapter (``adapter = "lora"``, on the backbone's ``scope``; the reference is the model
with the adapter switched off) or every parameter but the codec (``adapter = "full"``; the
reference is a frozen copy). ``init_run`` starts from another run's trained weights (fine-tune,
then GRPO; in a suite a method table's ``after = "lora"`` sets it to the ``lora`` run on the same
backbone, data recipe and seed, see :mod:`ttsadapt.suite`); the reference is then that starting
model. Weights are saved like the supervised
methods' (``adapter/``), so synthesis and ``speak`` use the trained model.

Judges are not rewards: after training, the last step's rollouts (``dpo``: the last batched call's
candidates) are scored a second time by each reward metric with its default params, as a suite's
``[[metrics]]`` entry without params judges (``cer``: Whisper ``base``, where the reward's is
``tiny.en``). The run's adapt stats get a ``judge_gap`` block (:func:`judge_gap`): ``sample``,
``n_rollouts``, ``judge_s`` and, per reward metric, ``output`` (the metric output the reward maps),
``reward_params`` / ``judge_params``, ``n`` (rollouts both scored), ``reward_mean``, ``judge_mean``,
``gap`` (judge - reward) and ``n_judge_errors``; a metric whose reward params are the judge's is
``same_model: true``, not scored again, with ``judge_mean`` and ``gap`` null. A judge that cannot
be set up leaves an ``error`` in its entry rather than failing the trained run.

The shared pieces of ``grpo`` and ``dpo`` (params, prompts, optimizer, weights) live here.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ttsadapt.audio import load_audio
from ttsadapt.components import AdaptResult, Backbone, Method, RunContext, TrainingData
from ttsadapt.errors import ConfigError, ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.preference import (
    Rollout,
    drop_reference,
    group_advantages,
    grpo_policy_loss,
    keep_reference,
    mean_std,
    require_preference,
)
from ttsadapt.rewards import QUALITY, RewardModel, RewardParams, RewardResult, metric_lookup
from ttsadapt.types import Clip, EvalItem, SynthesisRequest


class PreferenceParams(RewardParams):
    """What ``grpo`` and ``dpo`` share: sampling, optimisation, trainable weights and the reward.

    Not the supervised :class:`TrainingParams`: there is no batch of clips, validation split or
    checkpoint selection here; the optimizer fields mean the same (AdamW, warm-up + decay)."""

    k: int = Field(12, ge=2, description="samples per prompt")
    max_steps: int = Field(100, ge=1, description="optimizer steps")
    lr: float = Field(1e-5, gt=0, description="peak learning rate")
    warmup_steps: int = Field(0, ge=0)
    scheduler: Literal["cosine", "linear", "constant"] = "constant"
    weight_decay: float = Field(0.0, ge=0)
    clip_grad_norm: float | None = Field(1.0, gt=0, description="null = no clipping")
    micro_batch: int = Field(8, ge=1, description="rollouts (pairs) per backward pass")
    temperature: float | None = Field(None, gt=0, description="sampling temperature (backbone's)")
    top_k: int | None = Field(None, ge=0, description="sampling top-k (backbone's; 0 = off)")
    sampling: dict[str, Any] = Field(
        default_factory=dict, description="other decoding settings of the backbone"
    )
    clone: bool = Field(
        True,
        description="prompt with another clip of the speaker, as evaluation does (that clip "
        "is the speaker similarity's reference either way)",
    )
    adapter: Literal["lora", "full"] = "lora"
    scope: Literal["lm", "decoder", "all"] = "lm"
    rank: int = Field(8, ge=1)
    alpha: float | None = Field(None, gt=0, description="default 2 x rank")
    init_run: str | None = Field(
        None,
        description="a run folder (or its adapter/ folder), or the id of a run of the same "
        "suite, whose trained weights to start from (in a suite, prefer the method table's "
        '`after = "lora"`: the runner then passes the source run\'s folder)',
    )


class GrpoParams(PreferenceParams):
    prompts_per_step: int = Field(2, ge=1, description="training sentences per step")
    normalize_std: bool = Field(True, description="divide advantages by the group's std")
    kl_coef: float = Field(0.0, ge=0, description="weight of KL(policy || start) per action")
    clip_eps: float = Field(0.2, gt=0, lt=1, description="PPO clip range when reuse > 1")
    reuse: int = Field(1, ge=1, description="optimizer passes over each batch of rollouts")


class PreferenceMethod(Method):
    """The common frame of ``grpo`` and ``dpo``: trainable weights, prompts, reward, saving."""

    Params = PreferenceParams

    @property
    def needs_reference(self) -> bool:
        """Whether the loss looks at the reference policy (then a frozen copy is kept where the
        adapter cannot simply be switched off)."""
        return True

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of the whole run (the learning-rate schedule's length)."""
        return self.params.max_steps

    # ------------------------------------------------------------------ weights

    def configure(self, backbone: Backbone, ctx: RunContext) -> None:
        """Load ``init_run``'s weights, make the trained ones require grad, keep the reference."""
        from ttsadapt.training.adapters import apply_lora, lora_config_of
        from ttsadapt.training.supervised import freeze_prefixes

        p = self.params
        start = self._init_weights(backbone, ctx)
        if start == "lora" and p.adapter != "lora":
            raise ConfigError(
                f"{self.name}: init_run {p.init_run} holds a LoRA adapter; set adapter = 'lora' "
                "to go on training it"
            )
        if start == "full" and p.adapter != "full":
            raise ConfigError(
                f"{self.name}: init_run {p.init_run} holds fully fine-tuned weights; set "
                "adapter = 'full' (a new adapter on them would be saved without them)"
            )
        if start is not None and self.needs_reference:
            keep_reference(backbone, force=True)  # the reference is the starting (tuned) model
        if p.adapter == "lora":
            if lora_config_of(backbone.module) is None:
                apply_lora(backbone, p.scope, p.rank, p.alpha, 0.0)
        else:
            for param in backbone.module.parameters():
                param.requires_grad_(True)
            freeze_prefixes(backbone.module, list(backbone.frozen_modules()))
        if start is None and self.needs_reference:
            keep_reference(backbone)  # full parameters: a frozen copy (LoRA: the adapter off)
        backbone.module.eval()  # dropout off: sampling and scoring see the same function

    def _init_weights(self, backbone: Backbone, ctx: RunContext) -> str | None:
        p = self.params
        if not p.init_run:
            return None
        from ttsadapt.training.checkpoint import load_trainable
        from ttsadapt.training.supervised import freeze_prefixes

        folder = Path(p.init_run)
        sibling = Path(ctx.run_dir).parent / p.init_run  # a run id of the same suite
        if not folder.is_absolute() and not folder.exists() and sibling.exists():
            folder = sibling
        if (folder / "adapter").is_dir():
            config = folder / "config.json"
            if config.is_file():
                ran = json.loads(config.read_text(encoding="utf-8")).get("backbone")
                if ran not in (None, backbone.name):
                    raise ConfigError(
                        f"{self.name}: init_run {folder} adapted backbone {ran!r}, not "
                        f"{backbone.name!r}"
                    )
            folder = folder / "adapter"
        if (folder / "adapter_config.json").is_file():
            backbone.load_adapter(folder)
            ctx.logger.info("%s: starting from the LoRA adapter in %s", self.name, folder)
            return "lora"
        if (folder / "trainable.safetensors").is_file():
            for param in backbone.module.parameters():
                param.requires_grad_(True)
            freeze_prefixes(backbone.module, list(backbone.frozen_modules()))
            load_trainable(backbone.module, folder / "trainable.safetensors")
            ctx.logger.info("%s: starting from the trained weights in %s", self.name, folder)
            return "full"
        raise ConfigError(
            f"{self.name}: init_run {p.init_run} holds neither a LoRA adapter "
            "(adapter_config.json) nor trained weights (trainable.safetensors), itself or in "
            "an adapter/ folder"
        )

    def optimizer(self, backbone: Backbone):
        from ttsadapt.training.config import TrainingParams
        from ttsadapt.training.optim import build_optimizer, build_scheduler

        p = self.params
        cfg = TrainingParams(
            lr=p.lr,
            warmup_steps=p.warmup_steps,
            scheduler=p.scheduler,
            max_steps=self.optimizer_steps,
            weight_decay=p.weight_decay,
            clip_grad_norm=p.clip_grad_norm,
        )
        params = [q for q in backbone.module.parameters() if q.requires_grad]
        if not params:
            raise ConfigError(f"{self.name}: backbone '{backbone.name}' has nothing to train")
        optimizer = build_optimizer(params, cfg)
        return params, optimizer, build_scheduler(optimizer, cfg)

    def step_optimizer(self, params, optimizer, scheduler) -> float:
        """Clip, step, zero; returns the gradient norm before clipping."""
        import torch

        clip = self.params.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def finish(
        self,
        backbone: Backbone,
        ctx: RunContext,
        counts: tuple[int, int],
        curves: list[dict[str, Any]],
        stats: dict[str, Any],
    ) -> AdaptResult:
        """After training: forget the reference copy, save the weights, hand back the result
        (``counts`` = the total and trainable parameters while training)."""
        drop_reference(backbone)
        backbone.module.eval()
        total, trainable = counts
        return AdaptResult(
            trainable_params=trainable,
            total_params=total,
            adapter_bytes=self.save_artifacts(backbone, ctx),
            curves=curves,
            stats=plain(stats),
        )

    def save_artifacts(self, backbone: Backbone, ctx: RunContext) -> int:
        """The trained weights in ``adapter/`` as the supervised methods save them."""
        from ttsadapt.training.supervised import SupervisedMethod

        return SupervisedMethod.save_artifacts(self, backbone, Path(ctx.run_dir) / "adapter", ctx)

    # ------------------------------------------------------------------ prompts and rewards

    def settings(self) -> dict[str, Any]:
        p = self.params
        s = dict(p.sampling)
        if p.temperature is not None:
            s["temperature"] = p.temperature
        if p.top_k is not None:
            s["top_k"] = p.top_k
        return s

    def reward_model(self, ctx: RunContext) -> RewardModel:
        return RewardModel(self.params, metric_lookup(ctx.hooks))

    def _prompt_clips(self, clips: list[Clip]) -> dict[str, Clip]:
        """Per clip id, another clip of its speaker (the voice to clone, with its transcript, as
        evaluation prompts with a clip of the speaker), when there is one."""
        by_speaker: dict[str, list[Clip]] = {}
        for clip in clips:
            by_speaker.setdefault(clip.speaker, []).append(clip)
        out = {}
        for clip in clips:
            others = [c for c in by_speaker[clip.speaker] if c.id != clip.id]
            if others:
                out[clip.id] = others[0]
        return out

    def _audio(self, path: Path | None) -> tuple[np.ndarray | None, int | None]:
        if path is None:
            return None, None
        key = str(path)
        if key not in self._audio_cache:
            try:
                self._audio_cache[key] = load_audio(path)
            except (ItemError, OSError, ValueError) as exc:
                self._audio_cache[key] = (None, None)
                self._log.warning("%s: cannot read %s (%s); left out", self.name, path, exc)
        return self._audio_cache[key]

    def start(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> None:
        """Check the backbone and the data; set up the per-run caches."""
        require_preference(backbone, self.name)
        if backbone.module is None:
            raise ConfigError(f"backbone '{backbone.name}' is not loaded: call load(device) first")
        if not data.train:
            raise ConfigError(f"method '{self.name}' needs training data; the train split is empty")
        self._audio_cache: dict[str, tuple[np.ndarray | None, int | None]] = {}
        self._log = ctx.logger
        self._prompts = self._prompt_clips(list(data.train))  # speaker references, and clones

    def request(self, clip: Clip) -> SynthesisRequest:
        prompt = self._prompts.get(clip.id) if self.params.clone else None
        audio, sr = self._audio(prompt.audio) if prompt is not None else (None, None)
        return SynthesisRequest(
            id=clip.id,
            text=clip.text,
            language=clip.language,
            speaker=clip.speaker,
            prompt_audio=audio,
            prompt_sample_rate=sr,
            prompt_text=prompt.text if audio is not None else None,
        )

    def eval_item(self, rollout: Rollout, clip: Clip, sample_rate: int, index: int) -> EvalItem:
        """The rollout as the reward's metrics see it: the clip's text, its recording as the
        reference, the speaker's prompt clip as the speaker reference."""
        ref, ref_sr = self._audio(clip.reference_audio or clip.audio)
        prompt = self._prompts.get(clip.id)
        spk, spk_sr = self._audio(prompt.audio) if prompt is not None else (None, None)
        return EvalItem(
            id=f"{clip.id}#{index}",
            audio=np.asarray(rollout.audio, dtype=np.float32).reshape(-1),
            sample_rate=sample_rate,
            text=clip.text,
            language=clip.language,
            speaker=clip.speaker,
            reference_audio=ref,
            reference_sample_rate=ref_sr,
            speaker_prompt=spk,
            speaker_prompt_sample_rate=spk_sr,
        )

    def rollouts_and_rewards(
        self,
        backbone: Any,
        clips: list[Clip],
        reward: RewardModel,
        seed: int,
    ) -> tuple[list[Rollout], list[EvalItem], RewardResult, dict[str, float]]:
        """Sample ``k`` rollouts per clip (one call) and score them (one call per metric); the
        rollouts, the items the metrics scored, the reward and the timings."""
        t0 = time.perf_counter()
        groups = backbone.sample_groups(
            [self.request(c) for c in clips], self.params.k, self.settings(), seed
        )
        t1 = time.perf_counter()
        rollouts = [r for group in groups for r in group]
        items = [
            self.eval_item(r, clips[r.group], backbone.sample_rate, i)
            for i, r in enumerate(rollouts)
        ]
        result = reward.score(items, [r.stopped for r in rollouts], [r.group for r in rollouts])
        t2 = time.perf_counter()
        return rollouts, items, result, {"sample_s": t1 - t0, "score_s": t2 - t1}

    def judge_model(self, ctx: RunContext) -> RewardModel:
        """The reward's terms with every metric at its default params: the judges."""
        judged = self.params.model_copy(update={"reward_metric_params": {}})
        return RewardModel(judged, metric_lookup(ctx.hooks))


def policy_terms(backbone: Any, rollouts: list[Rollout], with_kl: bool) -> dict[str, Any]:
    """``logprob`` (and ``kl``, ``entropy``) of ``rollouts`` under the current model: from the
    backbone's ``rollout_stats`` when it has one (exact KL over its actions), else from
    ``rollout_logprobs`` with a sampled KL (``k2``: half the squared per-action log-ratio, whose
    gradient is the KL's on policy) and the sampled entropy ``-logp / n``."""
    import torch

    from ttsadapt.preference import reference_policy

    stats_fn = getattr(backbone, "rollout_stats", None)
    if callable(stats_fn):
        return stats_fn(rollouts, with_kl)
    logp = backbone.rollout_logprobs(rollouts)
    n = torch.tensor([max(r.n_actions, 1) for r in rollouts], dtype=logp.dtype)
    out = {"logprob": logp, "entropy": (-logp / n).detach()}
    if with_kl:
        with reference_policy(backbone):
            ref = backbone.rollout_logprobs(rollouts)
        out["kl"] = 0.5 * ((logp - ref) / n) ** 2 * n
    return out


class Grpo(PreferenceMethod):
    name = "grpo"
    version = "1"
    description = (
        "GRPO: K samples per prompt in one batched call, rewards from ASR / speaker / quality "
        "metrics, group-relative advantages; LoRA or full parameters."
    )
    Params = GrpoParams

    @property
    def needs_reference(self) -> bool:
        return self.params.kl_coef > 0

    @property
    def optimizer_steps(self) -> int:
        return self.params.max_steps * self.params.reuse

    def adapt(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> AdaptResult:
        from ttsadapt.training.seeding import seed_everything

        p = self.params
        self.start(backbone, data, ctx)
        seed_everything(ctx.seed)
        self.configure(backbone, ctx)
        total, trainable = backbone.parameter_counts()
        reward = self.reward_model(ctx)
        params, optimizer, scheduler = self.optimizer(backbone)
        clips = list(data.train)
        order = np.random.default_rng(ctx.seed).permutation(len(clips)).tolist()
        curves: list[dict[str, Any]] = []
        skipped = samples = 0
        quality_used: Counter[str] = Counter()
        bar = ctx.progress(total=p.max_steps, desc=self.name)
        t_start = time.perf_counter()
        for step in range(1, p.max_steps + 1):
            t0 = time.perf_counter()
            chosen = [
                clips[order[((step - 1) * p.prompts_per_step + j) % len(clips)]]
                for j in range(p.prompts_per_step)
            ]
            rollouts, items, result, timing = self.rollouts_and_rewards(
                backbone, chosen, reward, seed=ctx.seed * 1_000_003 + step
            )
            samples += len(rollouts)
            quality_used.update(q for q in result.quality_metric if q)
            adv = group_advantages(
                result.rewards, [r.group for r in rollouts], normalize_std=p.normalize_std
            )
            skipped += adv.skipped_groups
            t1 = time.perf_counter()
            update = self.update(backbone, rollouts, adv, params, optimizer, scheduler)
            row = {
                "step": step,
                **result.summary(),
                "skipped_groups": adv.skipped_groups,
                "groups": adv.groups,
                "n_samples": len(rollouts),
                "mean_actions": float(np.mean([r.n_actions for r in rollouts])),
                "lr": optimizer.param_groups[0]["lr"],
                **update,
                "sample_s": round(timing["sample_s"], 4),
                "score_s": round(timing["score_s"], 4),
                "update_s": round(time.perf_counter() - t1, 4),
                "step_s": round(time.perf_counter() - t0, 4),
            }
            curves.append(plain(row))
            bar.update(1)
            bar.set_postfix({"reward": f"{result.rewards.mean():.3f}"}, refresh=False)
        bar.close()
        train_s = time.perf_counter() - t_start
        gap = judge_gap(reward, self.judge_model(ctx), items, result, "last_step", ctx.logger)
        stats = summarise(curves, ("sample_s", "score_s", "update_s", "step_s"))
        stats.update(
            train_s=round(train_s, 3),
            n_samples=samples,
            skipped_groups=skipped,
            quality_metric=dict(quality_used),
            reward_metric_calls=dict(reward.calls),
            judge_gap=gap,
            adapter=p.adapter,
        )
        return self.finish(backbone, ctx, (total, trainable), curves, stats)

    def update(
        self, backbone: Any, rollouts: list[Rollout], adv: Any, params, optimizer, scheduler
    ) -> dict[str, float]:
        """``reuse`` optimizer steps on the rollouts of groups with spread; nothing when none."""
        import torch

        p = self.params
        used = [i for i in range(len(rollouts)) if adv.used[i]]
        if not used:
            return {"loss": math.nan, "kl": math.nan, "entropy": math.nan, "clip_frac": math.nan}
        old = torch.tensor([rollouts[i].old_logprob for i in used], dtype=torch.float32)
        a = torch.tensor(adv.values[used], dtype=torch.float32)
        n = torch.tensor([rollouts[i].n_actions for i in used], dtype=torch.float32)
        clip_eps = p.clip_eps if p.reuse > 1 else None
        logs: dict[str, list[float]] = {}
        for _ in range(p.reuse):
            for start in range(0, len(used), p.micro_batch):
                sl = slice(start, start + p.micro_batch)
                part = [rollouts[i] for i in used[sl]]
                terms = policy_terms(backbone, part, p.kl_coef > 0)
                logp = terms["logprob"].float()
                loss, info = grpo_policy_loss(
                    logp,
                    old[sl].to(logp.device),
                    a[sl].to(logp.device),
                    n[sl].to(logp.device),
                    clip_eps,
                )
                if p.kl_coef > 0:
                    kl = (terms["kl"].float() / n[sl].to(logp.device)).mean()
                    loss = loss + p.kl_coef * kl
                    logs.setdefault("kl", []).append(float(kl.detach()))
                weight = len(part) / len(used)
                (loss * weight).backward()
                ent = (terms["entropy"].float().detach() / n[sl].to(logp.device)).mean()
                logs.setdefault("loss", []).append(float(loss.detach()))
                logs.setdefault("entropy", []).append(float(ent))
                logs.setdefault("clip_frac", []).append(info["clip_frac"])
                logs.setdefault("ratio_mean", []).append(info["ratio_mean"])
            logs.setdefault("grad_norm", []).append(
                self.step_optimizer(params, optimizer, scheduler)
            )
        out = {k: float(np.mean(v)) for k, v in logs.items()}
        out.setdefault("kl", math.nan)
        return out


def judge_gap(
    reward: RewardModel,
    judge: RewardModel,
    items: list[EvalItem],
    result: RewardResult,
    sample: str,
    logger: Any = None,
) -> dict[str, Any]:
    """Reward-vs-judge gap on ``items`` (scored by ``reward`` into ``result``): each reward metric
    scores again, as ``judge`` (the same terms, default metric params), the rollouts the reward
    scored; per metric the means of the mapped output over the rollouts both scored and their
    difference, judge - reward. A metric whose params are the judge's is ``same_model`` and not
    scored again. One ``Metric.score`` call per judged metric, through the reward's scorer."""
    t0 = time.perf_counter()
    p = reward.params
    wanted: dict[str, dict[int, float]] = {}  # metric -> rollout index -> the reward's value
    for term in p.reward_weights:
        raw = result.raw[term]
        names = (
            [p.quality_with_reference, p.quality_without_reference] if term == QUALITY else [term]
        )
        for name in names:
            values = wanted.setdefault(name, {})
            for i in range(len(items)):
                if not math.isfinite(raw[i]):
                    continue  # gated, or the metric failed: no reward value to compare
                if term == QUALITY and result.quality_metric[i] != name:
                    continue
                values[i] = float(raw[i])
    metrics: dict[str, dict[str, Any]] = {}
    for name, values in wanted.items():
        reward_params = reward.metric(name).params.model_dump(mode="json")
        judge_params = judge.metric(name).params.model_dump(mode="json")
        entry: dict[str, Any] = {
            "output": reward.output(name),
            "reward_params": reward_params,
            "judge_params": judge_params,
            "same_model": reward_params == judge_params,
            "n": len(values),
            "reward_mean": float(np.mean(list(values.values()))) if values else None,
            "judge_mean": None,
            "gap": None,
            "n_judge_errors": 0,
        }
        metrics[name] = entry
        if entry["same_model"] or not values:
            continue
        idx = sorted(values)
        try:
            scores = judge._score(name, [items[i] for i in idx])
        except Exception as exc:  # noqa: BLE001 - a judge that cannot load must not lose the run
            entry["error"] = f"{type(exc).__name__}: {exc}"
            if logger is not None:
                logger.warning("judge gap: metric '%s' could not judge (%s)", name, exc)
            continue
        paired: list[tuple[float, float]] = []
        for i, s in zip(idx, scores, strict=True):
            value = s.values.get(entry["output"]) if s.error is None else None
            if value is None or not math.isfinite(value):
                entry["n_judge_errors"] += 1
                continue
            paired.append((values[i], float(value)))
        entry["n"] = len(paired)
        if paired:
            reward_mean = float(np.mean([r for r, _ in paired]))
            judge_mean = float(np.mean([j for _, j in paired]))
            entry.update(
                reward_mean=reward_mean, judge_mean=judge_mean, gap=judge_mean - reward_mean
            )
        else:
            entry["reward_mean"] = None
    return {
        "sample": sample,
        "n_rollouts": len(items),
        "metrics": metrics,
        "judge_metric_calls": dict(judge.calls),
        "judge_s": round(time.perf_counter() - t0, 4),
    }


def plain(value: Any) -> Any:
    """``value`` for a JSON record: NaN and infinities become null, numpy scalars Python ones."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarise(curves: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean per step of each timing key, and the reward at the first and the last step."""
    stats: dict[str, Any] = {}
    for key in keys:
        mean, _ = mean_std([c.get(key) for c in curves])
        stats[f"{key}_per_step"] = round(mean, 4) if math.isfinite(mean) else None
    rewards = [c["reward_mean"] for c in curves if c.get("reward_mean") is not None]
    if rewards:
        stats["reward_first"] = rewards[0]
        stats["reward_last"] = rewards[-1]
    return stats


@hookimpl
def ttsadapt_register_methods():
    return [Grpo]
