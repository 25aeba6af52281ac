"""``dpo``: offline Direct Preference Optimisation on pairs mined from sampled candidates.

Candidates are sampled as GRPO samples them (``k`` per prompt, batched; ``candidate_prompts``
training sentences) and scored with the same reward (:mod:`ttsadapt.rewards`). Pairs come from
each prompt's group: the chosen candidate beats the rejected one on the reward by at least
``pair_margin`` and is no worse on any term in ``pair_terms`` (default CER and speaker similarity),
neither is gated, and their durations differ by at most ``pair_max_duration_ratio``. Pairs are
saved as ``pairs.jsonl`` in the run folder. The reward-vs-judge gap on the last batched call's
candidates is in the adapt stats' ``judge_gap`` (see :mod:`ttsadapt.plugins.methods.grpo`).

Each step takes ``pair_batch`` pairs and minimises
``-log sigmoid(beta * scale * ((s_c - s_r) - (ref_c - ref_r)))`` where ``s`` is the backbone's
``preference_scores`` (token LM: summed log-probs of the speech tokens, scale 1; flow decoder:
minus the flow-matching loss with the same time step and noise for chosen, rejected, policy and
reference, scale 1/2: Diffusion-DPO) plus ``sft_coef`` times the chosen candidates' per-action
negative score. The reference is the starting model (:func:`ttsadapt.preference.reference_policy`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ttsadapt.components import AdaptResult, Backbone, RunContext, TrainingData
from ttsadapt.errors import ConfigError
from ttsadapt.markers import hookimpl
from ttsadapt.preference import Rollout, dpo_loss, reference_policy
from ttsadapt.records import atomic_write_jsonl

from .grpo import PreferenceMethod, PreferenceParams, judge_gap, plain, summarise

PAIRS_FILE = "pairs.jsonl"


class DpoParams(PreferenceParams):
    beta: float = Field(0.05, gt=0, description="DPO temperature (flow backbones scale it by 1/2)")
    sft_coef: float = Field(0.0, ge=0, description="weight of the SFT term on chosen candidates")
    candidate_prompts: int = Field(16, ge=1, description="training sentences to sample for")
    prompts_per_call: int = Field(4, ge=1, description="prompts sampled per batched call")
    pairs_per_group: int = Field(2, ge=1, description="pairs mined from each prompt's group")
    pair_margin: float = Field(0.05, ge=0, description="least reward gap of a pair")
    pair_terms: str = Field(
        "cer,speaker_similarity",
        description="comma-separated reward terms on which the chosen may not be worse "
        "(terms the reward lacks are ignored)",
    )
    pair_max_duration_ratio: float = Field(1.5, ge=1, description="longer / shorter duration")
    pair_batch: int = Field(8, ge=1, description="pairs per optimizer step")


@dataclass
class Pair:
    chosen: int  # index into the candidate list
    rejected: int
    group: int
    margin: float


def mine_pairs(
    rewards: np.ndarray,
    terms: dict[str, np.ndarray],
    gates: list[str | None],
    durations: np.ndarray,
    groups: list[int],
    *,
    margin: float,
    pair_terms: list[str],
    max_duration_ratio: float,
    per_group: int,
) -> tuple[list[Pair], Counter[str]]:
    """Pairs within each group: best candidates against worst ones, in order of reward, while the
    rules hold (see the module docstring); returns the pairs and why candidate pairs were
    refused."""
    refused: Counter[str] = Counter()
    pairs: list[Pair] = []
    group_arr = np.asarray(groups)
    for g in dict.fromkeys(group_arr.tolist()):
        idx = [int(i) for i in np.flatnonzero(group_arr == g) if gates[i] is None]
        idx.sort(key=lambda i: (-rewards[i], i))
        used: set[int] = set()
        found = 0
        for c in idx:
            if found >= per_group:
                break
            if c in used:
                continue
            for r in reversed(idx):
                if r == c or r in used:
                    continue
                gap = float(rewards[c] - rewards[r])
                if gap < margin:
                    refused["margin"] += 1
                    break  # the worst left is too close: so is every better one
                worse = [t for t in pair_terms if t in terms and terms[t][c] < terms[t][r]]
                if worse:
                    refused["term_" + worse[0]] += 1
                    continue
                lo, hi = sorted((float(durations[c]), float(durations[r])))
                if lo <= 0 or hi / lo > max_duration_ratio:
                    refused["duration"] += 1
                    continue
                pairs.append(Pair(chosen=c, rejected=r, group=int(g), margin=gap))
                used.update((c, r))
                found += 1
                break
    return pairs, refused


class Dpo(PreferenceMethod):
    name = "dpo"
    version = "1"
    description = (
        "Offline DPO on pairs mined from sampled candidates with the GRPO reward; token "
        "log-probs (NeuTTS) or the Diffusion-DPO form (flow decoders)."
    )
    Params = DpoParams

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
        chosen_clips = [clips[order[i % len(clips)]] for i in range(p.candidate_prompts)]

        t0 = time.perf_counter()
        candidates: list[Rollout] = []
        rewards, durations, gates, groups = [], [], [], []
        terms: dict[str, list[float]] = {t: [] for t in p.reward_weights}
        timing = {"sample_s": 0.0, "score_s": 0.0}
        call_clips: list[Any] = []
        for start in range(0, len(chosen_clips), p.prompts_per_call):
            part = chosen_clips[start : start + p.prompts_per_call]
            rolls, items, result, spent = self.rollouts_and_rewards(
                backbone, part, reward, seed=ctx.seed * 1_000_003 + start
            )
            for key in timing:
                timing[key] += spent[key]
            for r in rolls:
                r.group += start
            candidates += rolls
            call_clips += part
            rewards += result.rewards.tolist()
            durations += result.durations.tolist()
            gates += result.gates
            groups += [r.group for r in rolls]
            for t in terms:
                terms[t] += result.terms[t].tolist()
        wanted = [t.strip() for t in p.pair_terms.split(",") if t.strip()]
        pairs, refused = mine_pairs(
            np.asarray(rewards),
            {t: np.asarray(v) for t, v in terms.items()},
            gates,
            np.asarray(durations),
            groups,
            margin=p.pair_margin,
            pair_terms=wanted,
            max_duration_ratio=p.pair_max_duration_ratio,
            per_group=p.pairs_per_group,
        )
        self._save_pairs(Path(ctx.run_dir), pairs, candidates, call_clips, rewards, terms)
        mined_s = time.perf_counter() - t0
        if not pairs:
            raise ConfigError(
                f"dpo: no preference pairs among {len(candidates)} candidates (refused: "
                f"{dict(refused)}); lower pair_margin, raise k or candidate_prompts"
            )
        ctx.logger.info("dpo: %d pairs from %d candidates", len(pairs), len(candidates))
        gap = judge_gap(reward, self.judge_model(ctx), items, result, "last_call", ctx.logger)

        curves = []
        rng = np.random.default_rng(ctx.seed + 1)
        queue: list[int] = []
        scale = float(getattr(backbone, "dpo_beta_scale", 1.0))
        bar = ctx.progress(total=p.max_steps, desc=self.name)
        for step in range(1, p.max_steps + 1):
            t1 = time.perf_counter()
            batch = []
            while len(batch) < min(p.pair_batch, len(pairs)):
                if not queue:
                    queue = rng.permutation(len(pairs)).tolist()
                batch.append(pairs[queue.pop()])
            logs = self._update(backbone, candidates, batch, scale, ctx.seed * 7919 + step)
            logs["grad_norm"] = self.step_optimizer(params, optimizer, scheduler)
            curves.append(
                plain(
                    {
                        "step": step,
                        **logs,
                        "lr": optimizer.param_groups[0]["lr"],
                        "update_s": round(time.perf_counter() - t1, 4),
                    }
                )
            )
            bar.update(1)
            bar.set_postfix({"acc": f"{logs['implicit_accuracy']:.2f}"}, refresh=False)
        bar.close()
        stats = summarise(curves, ("update_s",))
        reward_mean = float(np.mean(rewards)) if rewards else math.nan
        stats.update(
            n_candidates=len(candidates),
            n_pairs=len(pairs),
            pairs_file=PAIRS_FILE,
            pairs_refused=dict(refused),
            candidate_reward_mean=reward_mean,
            candidate_reward_std=float(np.std(rewards)) if rewards else math.nan,
            gated=dict(Counter(g.split(":")[0] for g in gates if g)),
            sample_s=round(timing["sample_s"], 3),
            score_s=round(timing["score_s"], 3),
            mine_s=round(mined_s, 3),
            reward_metric_calls=dict(reward.calls),
            judge_gap=gap,
            adapter=p.adapter,
        )
        return self.finish(backbone, ctx, (total, trainable), curves, stats)

    def _update(
        self, backbone: Any, candidates: list[Rollout], batch: list[Pair], scale: float, seed: int
    ) -> dict[str, float]:
        """Gradients of the DPO (+ SFT) loss over ``batch``, in micro-batches; the logged
        values."""
        import torch

        p = self.params
        logs: dict[str, list[float]] = {}
        for start in range(0, len(batch), p.micro_batch):
            part = batch[start : start + p.micro_batch]
            chosen = [candidates[q.chosen] for q in part]
            rejected = [candidates[q.rejected] for q in part]
            with reference_policy(backbone):
                ref_c = backbone.preference_scores(chosen, seed)
                ref_r = backbone.preference_scores(rejected, seed)
            pol_c = backbone.preference_scores(chosen, seed)
            pol_r = backbone.preference_scores(rejected, seed)
            loss, info = dpo_loss(pol_c, pol_r, ref_c.detach(), ref_r.detach(), p.beta, scale)
            total = loss
            if p.sft_coef > 0:
                n = torch.tensor([max(r.n_actions, 1) for r in chosen], dtype=pol_c.dtype)
                sft = -(pol_c / n.to(pol_c.device)).mean()
                total = total + p.sft_coef * sft
                logs.setdefault("sft_loss", []).append(float(sft.detach()))
            (total * (len(part) / len(batch))).backward()
            logs.setdefault("loss", []).append(float(loss.detach()))
            for key, value in info.items():
                logs.setdefault(key, []).append(value)
        return {k: float(np.mean(v)) for k, v in logs.items()}

    def _save_pairs(
        self,
        run_dir: Path,
        pairs: list[Pair],
        candidates: list[Rollout],
        clips: list[Any],
        rewards: list[float],
        terms: dict[str, list[float]],
    ) -> None:
        def side(i: int) -> dict[str, Any]:
            r = candidates[i]
            return {
                "candidate": i,
                "reward": rewards[i],
                "terms": {t: v[i] for t, v in terms.items()},
                "duration_s": float(np.asarray(r.audio).size) / self._sample_rate,
                "n_actions": r.n_actions,
                "stopped": r.stopped,
            }

        rows = [
            {
                "pair": j,
                "clip": clips[q.group].id,
                "text": clips[q.group].text,
                "margin": q.margin,
                "chosen": side(q.chosen),
                "rejected": side(q.rejected),
            }
            for j, q in enumerate(pairs)
        ]
        atomic_write_jsonl(run_dir / PAIRS_FILE, rows)

    def start(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> None:
        super().start(backbone, data, ctx)
        self._sample_rate = float(backbone.sample_rate)


@hookimpl
def ttsadapt_register_methods():
    return [Dpo]
