"""Pre-train the embedded reference model: a small VoxCPM2 (mel codec) that learns to *read*.

The quick suite's zero-shot anchor must be a model that already speaks, or adaptation has nothing
to improve on. This script makes one, reproducibly and offline, resumable at any moment::

    python -m ttsadapt.plugins.backbones.voxcpm2.reference --steps 6000 --out DIR

Recipe (the levers that make text-to-audio alignment learnable on a CPU):

* **data**: the reading corpus (:mod:`ttsadapt.data.reading`): thousands of distinct sentences from
  Debian's fortune files plus single words, spoken by eight espeak-ng voices that are *not* the quick
  suite's target voices; no sentence of the project's own sentence sets (the quick suite's training
  and evaluation sentences) is ever seen;
* **phoneme input**: the tokenizer reads espeak-ng IPA (``text_input = "phonemes"``; the language
  tag stays as text), nearly one symbol per sound instead of English spelling;
* **curriculum**: the first ``--stage1-steps`` steps train on single words and short sentences
  (≤ ``--stage1-words`` words), the rest on everything;
* **history dropout**: whole audio patches of the LM's input are dropped at random while
  training (``history_dropout``, Tacotron's pre-net dropout), so the next patch cannot be predicted
  from the audio heard so far alone;
* **alignment loss**: a forward-sum (CTC) loss over one LM layer's attention from each audio
  position to the phoneme tokens (``align_weight``, ``align_layer``), during pre-training only: the
  attention must walk through the text in order.

Training runs the shared loop (``ttsadapt.training.loop.Trainer``: AdamW, warm-up then a constant
learning rate, checkpoints every ``--segment`` steps, resume after a kill). After every segment the
script measures alignment before CER can: the *text gain* (how much the right transcript lowers the
validation loss against another sentence's transcript), then synthesises ``--eval-items`` held-out
sentences in the pre-training voices and scores them with Whisper base (CER, and *matching*: how
often an output's transcript is closest to its own sentence among all of them). Every row goes to
``reading_curve.jsonl``; the model folder (``--out``) is rewritten after every segment with the
curve and its plot, so what is committed is always the latest complete segment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference" / "voxcpm2-tiny-espeak"
MODEL_SIZE = {
    "lm_hidden": 256,
    "lm_layers": 4,
    "lm_kv_heads": 2,
    "residual_layers": 1,
    "local_hidden": 128,
    "local_layers": 2,
    "head_dim": 32,
}
CURVE_FILE = "reading_curve.jsonl"


def _select(clips: list[Any], split: str, max_words: int | None = None) -> list[Any]:
    out = [c for c in clips if c.split == split]
    if max_words is not None:
        out = [c for c in out if len(c.text.split()) <= max_words]
    return out


def _prepared(backbone: Any, clips: list[Any], cache: Path) -> list[Any]:
    """``backbone.prepare(clips)``, kept in ``cache`` (tensors only, loaded with
    ``weights_only=True``): phonemising and encoding 7,500 clips takes minutes on two cores."""
    import torch

    from ttsadapt.plugins.backbones.voxcpm2._data import VoxCPMExample

    ids = [c.id for c in clips]
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved["ids"] == ids:
            return [VoxCPMExample(i, t, a) for i, t, a in zip(ids, saved["text"], saved["audio"])]
    examples = backbone.prepare(clips)
    if len(examples) == len(clips):
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "ids": ids,
                "text": [e.text_ids for e in examples],
                "audio": [e.audio_feats for e in examples],
            },
            cache,
        )
    return examples


def text_gain(backbone: Any, examples: list[Any]) -> float:
    """Relative drop of the validation loss when each clip is paired with its own transcript
    instead of the next clip's (same audio, same batch): 0 = the model ignores the text."""
    import dataclasses

    import torch

    module = backbone.module
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            right = backbone.loss(backbone.collate(examples))["loss_diff"].item()
            shifted = [
                dataclasses.replace(ex, text_ids=examples[(i + 1) % len(examples)].text_ids)
                for i, ex in enumerate(examples)
            ]
            wrong = backbone.loss(backbone.collate(shifted))["loss_diff"].item()
    finally:
        module.train(was)
    return (wrong - right) / wrong if wrong > 0 else 0.0


class Evaluator:
    """Dev-set CER and matching on held-out sentences spoken in the pre-training voices."""

    def __init__(self, clips: list[Any]) -> None:
        from ttsadapt.audio import load_audio
        from ttsadapt.registry import build_registry

        self.clips = clips
        self.metric = build_registry().get("metric", "cer")()
        self.metric.setup()
        self.recordings = [load_audio(c.audio, target_sr=16000)[0] for c in clips]
        self.floor = self._cer(self.recordings)[0]

    def _items(self, audios: list[np.ndarray]) -> list[Any]:
        from ttsadapt.types import EvalItem

        return [
            EvalItem(id=c.id, audio=a, sample_rate=16000, text=c.text, language=c.language)
            for c, a in zip(self.clips, audios, strict=True)
        ]

    def _cer(self, audios: list[np.ndarray]) -> tuple[float, float]:
        import jiwer

        from ttsadapt.plugins.metrics._textnorm import normalize

        scores = self.metric.score(self._items(audios))
        headline = self.metric.outputs[0].name
        cers = [s.values.get(headline, 1.0) if s.ok else 1.0 for s in scores]
        refs = [normalize(c.text, c.language) for c in self.clips]
        hits = 0
        for s in scores:
            hyp = normalize(str(s.extra.get("transcript", "")), "en") if s.ok else ""
            if not hyp:
                continue
            dists = [jiwer.cer(r, hyp) if r else 1.0 for r in refs]
            hits += int(int(np.argmin(dists)) == [c.id for c in self.clips].index(s.id))
        return float(np.mean(cers)), hits / len(scores)

    def __call__(self, backbone: Any) -> dict[str, float]:
        from ttsadapt.types import SynthesisRequest

        t0 = time.perf_counter()
        audios = []
        for c in self.clips:
            n_sym = len(backbone._text_ids(backbone._model_text(c.text, c.language)))
            req = SynthesisRequest(id=c.id, text=c.text, language=c.language, speaker=c.speaker)
            settings = {"max_len": int(3 * n_sym + 20), "inference_timesteps": 10}
            audios.append(backbone.synthesize([req], settings)[0])
        synth_s = time.perf_counter() - t0
        cer, match = self._cer(audios)
        seconds = sum(len(a) for a in audios) / backbone.sample_rate
        return {
            "dev_cer": round(cer, 4),
            "dev_cer_floor": round(self.floor, 4),
            "dev_match": round(match, 4),
            "dev_audio_s": round(seconds, 2),
            "synthesis_rtf": round(synth_s / max(seconds, 1e-6), 3),
        }


def plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [r.get("val_loss") for r in rows], "o-", label="validation loss")
    axes[0].set_title("validation loss (diff + stop)")
    axes[1].plot(steps, [r.get("text_gain") for r in rows], "o-", color="C2")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_title("text gain (right vs wrong transcript)")
    axes[2].plot(steps, [r.get("dev_cer") for r in rows], "o-", color="C3", label="model")
    axes[2].plot(steps, [r.get("dev_cer_floor") for r in rows], "--", color="grey", label="floor")
    axes[2].plot(steps, [r.get("dev_match") for r in rows], "s:", color="C4", label="matching")
    axes[2].set_title("held-out CER (Whisper base), matching")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ttsadapt.plugins.backbones.voxcpm2.reference",
        description="Pre-train the small VoxCPM2 reference model offline (resumable).",
    )
    parser.add_argument("--steps", type=int, default=6000, help="optimizer steps in total")
    parser.add_argument("--stage1-steps", type=int, default=1000, help="curriculum: short items")
    parser.add_argument("--stage1-words", type=int, default=5)
    parser.add_argument("--segment", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--out", type=Path, default=None, help="model folder (default: WORK/model)")
    parser.add_argument("--work", type=Path, default=Path("results/_reference_pretraining"))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--align-weight", type=float, default=0.5)
    parser.add_argument("--history-dropout", type=float, default=0.5)
    parser.add_argument("--eval-items", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="use only N training clips")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this model folder's weights"
    )
    args = parser.parse_args(argv)
    args.out = args.out or args.work / "model"

    import torch

    from ttsadapt.components import RunContext
    from ttsadapt.data.manifest import load_manifest
    from ttsadapt.data.reading import build_reading_corpus
    from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
    from ttsadapt.records import atomic_folder, read_jsonl
    from ttsadapt.runner import _progress
    from ttsadapt.training import checkpoint as ckpt
    from ttsadapt.training.config import TrainingParams
    from ttsadapt.training.loop import Trainer

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger = logging.getLogger("ttsadapt.reference")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    manifest = build_reading_corpus()
    clips = load_manifest(manifest).clips
    train = _select(clips, "train")[: args.limit]
    short = {c.id for c in _select(clips, "train", args.stage1_words)}
    val = _select(clips, "validation")
    backbone = VoxCPM2Backbone(
        model="tiny",
        text_input="phonemes",
        align_weight=args.align_weight,
        history_dropout=args.history_dropout,
        **MODEL_SIZE,
    )
    backbone.load(args.device)
    if args.init is not None and not any(args.work.glob("stage*/checkpoints/step-*")):
        from safetensors.torch import load_file

        from ttsadapt.plugins.backbones.voxcpm2._io import check_and_load

        weights = args.init / "model.safetensors"
        check_and_load(backbone.module, load_file(str(weights)), weights, skip_prefix="audio_vae.")
        logger.info("initialised from %s", args.init)
    t0 = time.perf_counter()
    examples = _prepared(backbone, train, args.work / f"prepared-{manifest.parent.name}-train.pt")
    val_examples = _prepared(backbone, val, args.work / f"prepared-{manifest.parent.name}-val.pt")
    logger.info(
        "reading corpus %s: %d training clips (%d short), %d validation; prepared in %.0f s",
        manifest.parent.name,
        len(examples),
        len(short),
        len(val_examples),
        time.perf_counter() - t0,
    )
    stage1 = [ex for ex in examples if ex.id in short]
    probe = val_examples[:32]
    evaluator = Evaluator(val[-args.eval_items :])
    args.work.mkdir(parents=True, exist_ok=True)
    curve_path = args.work / CURVE_FILE
    rows = read_jsonl(curve_path) if curve_path.is_file() else []
    done = {r["step"] for r in rows}

    def write_model(step: int) -> None:
        meta = {
            "recipe": "reading pre-training (phoneme input, CTC alignment loss, curriculum)",
            "steps": step,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "align_weight": args.align_weight,
            "history_dropout": args.history_dropout,
            "init": str(args.init) if args.init else None,
            "stage1": {"steps": args.stage1_steps, "max_words": args.stage1_words},
            "model_size": MODEL_SIZE,
            "corpus": json.loads((manifest.parent / "corpus.json").read_text()),
            "parameters": backbone.parameter_counts()[0],
            "curve": rows,
        }
        with atomic_folder(args.out) as tmp:
            backbone.save_pretrained(tmp / "model")
            for f in (tmp / "model").iterdir():
                f.rename(tmp / f.name)
            (tmp / "model").rmdir()
            (tmp / "ttsadapt_reference.json").write_text(json.dumps(meta, indent=2) + "\n")
            if rows:
                plot_curve(rows, tmp / "learning_curve.png")

    for target in range(args.segment, args.steps + 1, args.segment):
        stage = 1 if target <= args.stage1_steps else 2
        run_dir = args.work / f"stage{stage}"
        local = target if stage == 1 else target - args.stage1_steps
        if stage == 2 and not ckpt.list_checkpoints(run_dir / "checkpoints"):
            last1 = ckpt.step_dir(args.work / "stage1" / "checkpoints", args.stage1_steps)
            ckpt.load_checkpoint(last1, backbone.module, with_state=False)
        cfg = TrainingParams(
            lr=args.lr,
            scheduler="constant",
            warmup_steps=200 if stage == 1 else 0,
            max_steps=local,
            batch_size=args.batch_size,
            grad_accum=1,
            val_every=args.segment,
            save_every=args.segment,
            max_val_batches=4,
            log_every=25,
        )
        ctx = RunContext(
            run_dir=run_dir, seed=0, device=args.device, logger=logger, progress=_progress
        )
        seg_t0 = time.perf_counter()
        outcome = Trainer(
            backbone, stage1 if stage == 1 else examples, val_examples, cfg, ctx
        ).fit()
        ckpt.load_checkpoint(
            ckpt.step_dir(ctx.checkpoint_dir, local), backbone.module, with_state=False
        )
        if target in done:
            continue
        val_loss = next((c.val_loss for c in outcome.checkpoints if c.step == local), None)
        row = {
            "step": target,
            "stage": stage,
            "val_loss": val_loss,
            "text_gain": round(text_gain(backbone, probe), 4),
            "train_seconds": round(time.perf_counter() - seg_t0, 1),
        }
        row.update(evaluator(backbone))
        rows.append(row)
        with curve_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        logger.info("segment done: %s", row)
        write_model(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
