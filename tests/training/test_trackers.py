"""Training curves to experiment trackers (TensorBoard by default) and the per-step plugin hook."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import TINY_TRAIN, make_ctx, tiny_neutts

from ttsadapt.errors import ConfigError
from ttsadapt.plugin_manager import create_plugin_manager
from ttsadapt.plugins.methods.lora import Lora
from ttsadapt.training.config import TrainingParams
from ttsadapt.training.loop import Trainer, resolve_trackers

pytest.importorskip("tensorboard", reason="tensorboard is a dependency of ttsadapt")


def _scalars(run_dir, tag):
    """(step, value) pairs of one scalar tag, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _curve(run_dir, key):
    rows = [json.loads(line) for line in (run_dir / "curves.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in rows if key in r]


def test_tensorboard_by_default_holds_the_train_loss_at_the_logged_steps(tmp_path, data):
    params = dict(TINY_TRAIN, log_every=5)  # logged: 1, 5, 10 and the last, 12
    Lora(scope="lm", rank=4, **params).adapt(tiny_neutts(), data, make_ctx(tmp_path))

    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    train = _scalars(tmp_path, "train_loss")
    assert [s for s, _ in train] == [1, 5, 10, 12]
    expected = _curve(tmp_path, "train_loss")
    assert [s for s, _ in expected] == [1, 5, 10, 12]
    for (_, got), (_, want) in zip(train, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-6)  # TensorBoard stores float32
    assert [s for s, _ in _scalars(tmp_path, "lr")] == [1, 5, 10, 12]
    val = _scalars(tmp_path, "val_loss")
    assert [s for s, _ in val] == [4, 8, 12]
    for (_, got), (_, want) in zip(val, _curve(tmp_path, "val_loss"), strict=True):
        assert got == pytest.approx(want, rel=1e-6)


def test_resumed_run_shows_each_step_once(tmp_path, data):
    class Killed(Exception):
        pass

    class KillingBar:  # kills the first attempt after step 6 was logged (checkpoint at 4)
        def __init__(self, total=None, desc=None):
            self.n = 0

        def update(self, n=1):
            self.n += n
            if self.n == 6:
                raise Killed()

        def close(self):
            pass

    ctx = make_ctx(tmp_path)
    ctx.progress = KillingBar
    with pytest.raises(Killed):
        Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, ctx)
    assert [s for s, _ in _scalars(tmp_path, "train_loss")] == list(range(1, 7))

    result = Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(tmp_path))
    assert result.stats["resumed_from_step"] == 4
    train = _scalars(tmp_path, "train_loss")
    assert [s for s, _ in train] == list(range(1, 13))  # steps 5-6 of the killed attempt purged
    assert [v for _, v in train] == pytest.approx([v for _, v in _curve(tmp_path, "train_loss")])


def test_plugin_observes_every_logged_step(tmp_path, data):
    import ttsadapt_test_doubles_training as observer

    observer.CALLS.clear()
    pm, _ = create_plugin_manager(extra_modules=["ttsadapt_test_doubles_training"], autoload=False)
    run_dir = tmp_path / "quick-lora-0123456789ab"
    ctx = make_ctx(run_dir)
    ctx.hooks = pm.hook
    ctx.trackers = []  # the hook does not depend on a tracker
    params = dict(TINY_TRAIN, log_every=4)  # logged: 1, 4, 8, 12
    result = Lora(scope="lm", rank=4, **params).adapt(tiny_neutts(), data, ctx)

    assert [(c[0], c[1]) for c in observer.CALLS] == [
        ("quick-lora-0123456789ab", s) for s in (1, 4, 8, 12)
    ]
    rows = {r["step"]: r for r in result.curves if "train_loss" in r}
    for _, step, values in observer.CALLS:
        assert values == {k: v for k, v in rows[step].items() if k != "step"}
        assert {"train_loss", "lr", "epoch"} <= set(values)
    assert not (run_dir / "tensorboard").exists()  # trackers = [] turns tracking off


def test_hook_is_looked_up_only_when_implemented(tmp_path, data):
    backbone = tiny_neutts()
    examples = backbone.prepare(data.train)
    pm, _ = create_plugin_manager(autoload=False)
    ctx = make_ctx(tmp_path)
    ctx.hooks = pm.hook
    trainer = Trainer(backbone, examples, [], TrainingParams(**TINY_TRAIN), ctx)
    assert trainer._step_hook is None  # no plugin implements it: the loop never calls pluggy
    pm.register(__import__("ttsadapt_test_doubles_training"), name="observer")
    trainer = Trainer(backbone, examples, [], TrainingParams(**TINY_TRAIN), ctx)
    assert trainer._step_hook is not None


def test_tracker_choice_is_checked():
    assert resolve_trackers(None) == ["tensorboard"]
    assert resolve_trackers([]) == []
    assert resolve_trackers(["tensorboard", "tensorboard"]) == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"unknown tracker 'comet'.*tensorboard, wandb, mlflow"):
        resolve_trackers(["comet"])
    for name in ("wandb", "mlflow"):
        if importlib.util.find_spec(name) is None:
            with pytest.raises(ConfigError, match=f"pip install {name}"):
                resolve_trackers([name])
        else:
            assert resolve_trackers([name]) == [name]
