"""``ttsadapt export RUN_DIR --format peft|voxcpm|neutts [--out DIR]``: a run's adapter in the
format the upstream tools load, with a model card.

* ``peft`` — PEFT's layout (``adapter_model.safetensors`` + ``adapter_config.json``, with
  ``base_model_name_or_path`` set to the run's base model): ``PeftModel.from_pretrained(base,
  DIR)`` loads it for any backbone whose ``module`` is a plain PyTorch model. A LoRA run only; a
  run's ``adapter/`` folder is already in this layout, the export adds the base model's name and
  the card. Converted from the files alone: no model is loaded.
* ``voxcpm`` — voxcpm's own LoRA format (``lora_weights.safetensors`` + ``lora_config.json``, what
  ``VoxCPM(..., lora_weights_path=DIR)`` reads); VoxCPM2 runs only.
* ``neutts`` — NeuTTS's: PEFT's layout on the Qwen2 LM with ``task_type = CAUSAL_LM`` for a LoRA
  run, a full transformers checkpoint folder for a full fine-tune (plus the ``mel_vq`` codebook
  where the run used that stand-in codec); NeuTTS runs only.

The upstream formats are written by the backbone's own ``export_adapter``: the copy it wrote during
training (``adapter/upstream``) when there is one, otherwise the backbone is loaded with the run's
parameters and weights and exports again. Every export gets a ``README.md`` model card: the run's
configuration, its data, its scores (with the zero-shot anchor's beside them when the suite has
one) and provenance.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError
from .records import DONE_MARKER, atomic_folder

FORMATS = ("peft", "voxcpm", "neutts")
# the backbone whose own export an upstream format is
FORMAT_BACKBONE = {"voxcpm": "voxcpm2", "neutts": "neutts"}
CARD_FILE = "README.md"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _run_files(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """The run's ``config.json`` and its ``adapter/`` folder, checked."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder (expected <results>/<suite>/runs/<id>)")
    config = _read(run_dir / "config.json")
    if not config:
        raise ConfigError(
            f"{run_dir}: no config.json; expected a run folder (<results>/<suite>/runs/<id>)"
        )
    if not (run_dir / DONE_MARKER).is_file():
        raise ConfigError(
            f"{run_dir}: the run is not finished (no {DONE_MARKER} marker); re-run its suite first"
        )
    summary = _read(run_dir / "run.json")
    if summary.get("status") == "failed":
        raise ConfigError(f"{run_dir}: the run failed ({summary.get('error')}); nothing to export")
    adapter = run_dir / "adapter"
    if not adapter.is_dir():
        raise ConfigError(
            f"{run_dir}: no adapter/ folder: method '{config.get('method')}' trained nothing "
            "(a zero-shot run has no adapter to export)"
        )
    return config, adapter


def export_run(
    run_dir: Path, fmt: str, out: Path | None = None, registry: Any = None, device: str = "cpu"
) -> Path:
    """Write the run's adapter in format ``fmt`` and its model card into ``out`` (default
    ``RUN_DIR/export/<fmt>``), replacing what was there; returns ``out``."""
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown format; expected one of {', '.join(FORMATS)}")
    config, adapter = _run_files(run_dir)
    backbone = config.get("backbone")
    wanted = FORMAT_BACKBONE.get(fmt)
    if wanted is not None and backbone != wanted:
        own = [k for k, v in FORMAT_BACKBONE.items() if v == backbone]
        raise ConfigError(
            f"--format {fmt} is the format of backbone '{wanted}', but run {run_dir.name} adapted "
            f"backbone '{backbone}'; use --format peft" + (f" or --format {own[0]}" if own else "")
        )
    out = Path(out) if out is not None else run_dir / "export" / fmt
    if out.resolve() == adapter.resolve() or adapter.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out}: choose a folder outside the run's adapter/ folder")
    with atomic_folder(out) as tmp:
        if fmt == "peft":
            _export_peft(adapter, config, tmp)
        else:
            _export_upstream(run_dir, adapter, config, tmp, registry, device)
        (tmp / CARD_FILE).write_text(model_card(run_dir, fmt, out), encoding="utf-8")
    return out


def base_model_name(config: dict[str, Any]) -> str:
    """The base model a run adapted: its backbone's ``model`` parameter (hub id or folder)."""
    params = config.get("backbone_params") or {}
    return str(params.get("model") or config.get("backbone") or "")


def _export_peft(adapter: Path, config: dict[str, Any], out: Path) -> None:
    from safetensors.torch import save_file

    from .training.adapters import CONFIG_FILE, PEFT_PREFIX, WEIGHTS_FILE, read_adapter_state

    if not (adapter / CONFIG_FILE).is_file():
        what = (
            "trained weights (trainable.safetensors, a full fine-tune)"
            if (adapter / "trainable.safetensors").is_file()
            else "no LoRA adapter"
        )
        declared = config.get("backbone")
        other = (
            {v: k for k, v in FORMAT_BACKBONE.items()}.get(declared)
            if isinstance(declared, str)
            else None
        )
        raise ConfigError(
            f"{adapter}: holds {what}, not a PEFT adapter (no {CONFIG_FILE}); --format peft "
            "exports LoRA runs"
            + (f"; --format {other} writes the backbone's own format" if other else "")
        )
    state = read_adapter_state(adapter)
    save_file(
        {PEFT_PREFIX + k: v.contiguous() for k, v in state.items()},
        str(out / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    peft_config = _read(adapter / CONFIG_FILE)
    peft_config["base_model_name_or_path"] = base_model_name(config)
    (out / CONFIG_FILE).write_text(
        json.dumps(peft_config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    for extra in sorted(adapter.iterdir()):  # what the backbone keeps beside it (a codebook)
        if extra.is_file() and extra.name not in (WEIGHTS_FILE, CONFIG_FILE, "adapter.safetensors"):
            shutil.copy2(extra, out / extra.name)


def _export_upstream(
    run_dir: Path,
    adapter: Path,
    config: dict[str, Any],
    out: Path,
    registry: Any,
    device: str,
) -> None:
    saved = adapter / "upstream"
    if saved.is_dir() and any(saved.iterdir()):
        shutil.copytree(saved, out, dirs_exist_ok=True)
        return
    from .speak import load_backbone

    if registry is None:
        from .registry import build_registry

        registry = build_registry()
    backbone = load_backbone(registry, config["backbone"], {}, adapter=run_dir, device=device)
    try:
        backbone.export_adapter(out)
    except NotImplementedError:
        raise ConfigError(
            f"backbone '{config['backbone']}' has no upstream export (export_adapter)"
        ) from None


# --------------------------------------------------------------------------- the model card


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    folder = run_dir / "records"
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        record = _read(path)
        if record.get("status", "ok") == "ok" and isinstance(record.get("outputs"), dict):
            out[path.stem] = record
    return out


def _anchor_records(run_dir: Path, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The records of the suite's anchor run of the same backbone and seed, if any."""
    for other in sorted(run_dir.parent.iterdir()) if run_dir.parent.is_dir() else []:
        if other == run_dir or not (other / DONE_MARKER).is_file():
            continue
        cfg = _read(other / "config.json")
        if (
            cfg.get("is_anchor")
            and cfg.get("backbone") == config.get("backbone")
            and cfg.get("backbone_params") == config.get("backbone_params")
            and cfg.get("seed") == config.get("seed")
        ):
            return _records(other)
    return {}


_LOAD = {
    "peft": """```python
from peft import PeftModel
base = ...  # the base model ({base}) as a PyTorch module, e.g. ttsadapt's backbone `.module`
model = PeftModel.from_pretrained(base, "{out}")
```""",
    "voxcpm": """```python
from voxcpm import VoxCPM
tts = VoxCPM.from_pretrained("{base}", lora_weights_path="{out}")
```""",
    "neutts": """```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
lm = AutoModelForCausalLM.from_pretrained("{base}")
lm = PeftModel.from_pretrained(lm, "{out}")   # a LoRA run; a full fine-tune folder loads directly
```""",
}


def model_card(run_dir: Path, fmt: str, out: Path) -> str:
    """A Markdown model card: what was adapted how, on which data, with which scores."""
    config = _read(run_dir / "config.json")
    summary = _read(run_dir / "run.json")
    records = _records(run_dir)
    anchor = {} if config.get("is_anchor") else _anchor_records(run_dir, config)
    base = base_model_name(config)
    method = config.get("method")
    recipe = config.get("recipe") or {}
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        *(["library_name: peft"] if fmt in ("peft", "neutts") else []),
        "tags: [text-to-speech, ttsadapt, " + json.dumps(str(method)) + "]",
        "---",
        "",
        f"# {config.get('backbone')} · {method} · {config.get('data_recipe') or 'no data'} · "
        f"seed {config.get('seed')}",
        "",
        f"Adapter of run `{config.get('run_id', run_dir.name)}` of suite "
        f"`{config.get('suite')}` v{config.get('suite_version')}, exported by ttsadapt "
        f"{__version__} in the `{fmt}` format. Base model: `{base}` (backbone "
        f"`{config.get('backbone')}` v{config.get('backbone_version')}).",
        "",
        "## Load it",
        "",
        _LOAD[fmt].format(base=base, out=out),
        "",
        "ttsadapt itself: `ttsadapt speak --backbone "
        f"{config.get('backbone')} --adapter {run_dir} --text '…' --out out.wav`.",
        "",
        "## Training",
        "",
        f"Method `{method}` v{config.get('method_version')}:",
        "",
        "| parameter | value |",
        "|---|---|",
        *(
            f"| {k} | `{json.dumps(v)}` |"
            for k, v in sorted((config.get("method_params") or {}).items())
        ),
        "",
        "Backbone parameters: "
        + ", ".join(
            f"`{k}={json.dumps(v)}`"
            for k, v in sorted((config.get("backbone_params") or {}).items())
        ),
    ]
    adapt = summary.get("adapt") or {}
    if adapt:
        total, trainable = adapt.get("total_params"), adapt.get("trainable_params")
        share = f" ({100 * trainable / total:.3f} %)" if total and trainable is not None else ""
        lines += [
            "",
            f"Trainable parameters: {trainable} of {total}{share}; adapter "
            f"{adapt.get('adapter_bytes', 0) / 1e6:.2f} MB; selected checkpoint "
            f"{json.dumps(adapt.get('selected') or {})}.",
        ]
    data = summary.get("data") or {}
    training = data.get("training") or {}
    lines += ["", "## Data", ""]
    if recipe:
        lines.append(
            f"Recipe `{recipe.get('name')}`: speakers "
            f"{', '.join(recipe.get('speakers') or []) or 'all'}; languages "
            f"{', '.join(recipe.get('languages') or []) or 'all'}; filters "
            + (
                ", ".join(
                    f"`{f.get('name')}`"
                    + (
                        "(" + ", ".join(f"{k}={v}" for k, v in f.items() if k != "name") + ")"
                        if len(f) > 1
                        else ""
                    )
                    for f in recipe.get("filters") or []
                    if isinstance(f, dict)
                )
                or "none"
            )
            + "."
        )
    if training:
        lines.append(
            f"Trained on {training.get('n_train')} clips, validated on "
            f"{training.get('n_validation')}."
        )
    if data:
        lines.append(
            f"Evaluation set: {data.get('eval_items')} items; clips set aside by the checks: "
            f"{data.get('n_dropped', data.get('quarantined', 0))} "
            "(listed in the run's dropped_clips.jsonl)."
        )
    lines += ["", "## Scores", ""]
    if records:
        lines += [
            "Mean over the evaluation set with its 95 % bootstrap interval"
            + (" and the zero-shot anchor's mean (same backbone and seed)" if anchor else "")
            + ".",
            "",
            "| metric | output | mean [95 % CI] | n | errors |" + (" anchor |" if anchor else ""),
            "|---|---|---|---|---|" + ("---|" if anchor else ""),
        ]
        for metric, record in records.items():
            for name, o in record["outputs"].items():
                hib = o.get("higher_is_better")
                arrow = "" if hib is None else (" ↑" if hib else " ↓")
                cell = f"{_fmt(o.get('mean'))} [{_fmt(o.get('ci_low'))}, {_fmt(o.get('ci_high'))}]"
                row = f"| {metric} v{record.get('metric_version')} | {name}{arrow} | {cell} | "
                row += f"{o.get('n')} | {record.get('n_errors', 0)} |"
                if anchor:
                    a = ((anchor.get(metric) or {}).get("outputs") or {}).get(name) or {}
                    row += f" {_fmt(a.get('mean'))} |"
                lines.append(row)
    else:
        lines.append("No scores recorded.")
    prov = summary.get("provenance") or {}
    lines += [
        "",
        "## Provenance",
        "",
        f"- git: `{prov.get('git_sha', '?')}`; device: `{prov.get('device', '?')}`; "
        f"finished {summary.get('finished_at', '?')}",
        f"- packages: {json.dumps(prov.get('packages') or {}, sort_keys=True)}",
        f"- run folder: `{run_dir}`",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def cmd_export(args: argparse.Namespace) -> int:
    registry = None
    if args.format != "peft":
        from .cli import _registry

        registry = _registry(args)
    out = export_run(
        Path(args.run_dir),
        args.format,
        Path(args.out) if args.out else None,
        registry=registry,
        device=args.device,
    )
    files = sorted(p.name for p in out.iterdir())
    print(f"{args.format} export of {Path(args.run_dir).name} -> {out} ({', '.join(files)})")
    return 0


def add_export_cli(sub: Any) -> None:
    """Register ``ttsadapt export`` on the CLI's subparsers."""
    p = sub.add_parser(
        "export",
        help="write a run's adapter in an upstream format (peft, voxcpm, neutts) with a model card",
        description="Write the adapter of a finished run in the format upstream tools load, with "
        "a README.md model card (config, data, scores, provenance). peft: PEFT's layout "
        "(PeftModel.from_pretrained); voxcpm: lora_weights.safetensors + lora_config.json "
        "(VoxCPM2 runs); neutts: PEFT on the Qwen2 LM, or a full checkpoint for full_ft "
        "(NeuTTS runs).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder: <results>/<suite>/runs/<id>")
    p.add_argument("--format", required=True, choices=FORMATS, help="the format to write")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export/FORMAT)")
    p.add_argument("--device", default="cpu", help="where to load a backbone when one is needed")
    p.set_defaults(func=cmd_export)
