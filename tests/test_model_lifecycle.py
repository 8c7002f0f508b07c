"""Hot swap and online fine-tuning, on the engine and through the worker (no broker needed)."""

import numpy as np
import torch

from detector.checkpoint import save_checkpoint
from detector.config import load_config
from detector.engine import Engine, EngineConfig
from detector.feed import interleave
from detector.finetune import fine_tune, normal_windows
from detector.training import TrainConfig, train
from detector.worker import Worker
from tests.conftest import sine_fleet

CFG = TrainConfig(timesteps=12, hidden=16, epochs=2, device="cpu")


def _warm_engine(ckpt) -> Engine:
    engine = Engine(ckpt, EngineConfig(device="cpu"))
    feed = interleave(sine_fleet(), ckpt.inputs)
    engine.process(feed.stream, feed.timestamp, feed.values)
    return engine


def test_fine_tune_trains_a_copy_on_normal_windows() -> None:
    ckpt = train(sine_fleet(), CFG).to_checkpoint()
    engine = _warm_engine(ckpt)
    X, y = normal_windows(engine)
    assert X.shape == (3, 12, 2) and y.shape == (3, 2) and np.isfinite(X).all()
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    tuned = fine_tune(engine, budget_s=0.3)
    assert tuned is not None and tuned.meta["fine_tuned_on"] == 3
    assert not torch.equal(tuned.model.head.weight, ckpt.model.head.weight)
    for k, v in ckpt.model.state_dict().items():  # the serving model is untouched
        assert torch.equal(v, before[k])
    assert engine.swap_model(tuned) == 3


def test_fine_tune_skips_streams_in_alert_and_without_data() -> None:
    ckpt = train(sine_fleet(), CFG).to_checkpoint()
    assert fine_tune(Engine(ckpt, EngineConfig(device="cpu"))) is None
    engine = _warm_engine(ckpt)
    engine.alerts.slabs["active"][:] = True
    assert fine_tune(engine, budget_s=0.1) is None


def test_worker_hot_swaps_a_changed_checkpoint_and_ignores_a_broken_one(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", train(sine_fleet(), CFG).to_checkpoint())
    worker = Worker(
        load_config(
            None, env={}, overrides=[f"model.path={path}", "model.device=cpu", "metrics.port=0"]
        )
    )
    feed = interleave(sine_fleet(), worker.ckpt.inputs)
    worker.engine.process(feed.stream, feed.timestamp, feed.values)
    first = worker.model.version
    assert not worker.model.reload_if_changed()  # unchanged file: nothing to do
    import dataclasses

    other = train(sine_fleet(), dataclasses.replace(CFG, seed=3)).to_checkpoint()
    save_checkpoint(path, other)
    assert worker.model.reload_if_changed() and worker.model.version != first
    assert torch.equal(worker.engine.model.head.weight, other.model.head.weight)
    path.write_bytes(b"truncated")
    assert not worker.model.reload_if_changed()  # logged; still serving the last good model
    assert torch.equal(worker.engine.model.head.weight, other.model.head.weight)


def test_worker_fine_tune_round_swaps_and_renames_the_version(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", train(sine_fleet(), CFG).to_checkpoint())
    overrides = [
        f"model.path={path}",
        "model.device=cpu",
        "metrics.port=0",
        "worker.finetune_interval_s=60",
        "worker.finetune_budget_s=0.2",
    ]
    worker = Worker(load_config(None, env={}, overrides=overrides))
    assert not worker.model.fine_tune()  # nothing seen yet: nothing to learn from
    feed = interleave(sine_fleet(), worker.ckpt.inputs)
    worker.engine.process(feed.stream, feed.timestamp, feed.values)
    assert worker.model.fine_tune() and worker.model.version.endswith("+ft1")
