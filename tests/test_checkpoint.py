import pickle
from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.errors import CheckpointError
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    result = train(sine_fleet(), TrainConfig(timesteps=8, hidden=8, epochs=1, device="cpu"))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", result.to_checkpoint())


def test_round_trip_describes_itself(saved: Path) -> None:
    ckpt = load_checkpoint(saved)
    assert ckpt.targets == ("a", "b") and ckpt.covariates == ()
    assert ckpt.scaling_mode == "per_stream" and set(ckpt.stream_scalers) == {"s0", "s1", "s2"}
    assert ckpt.train_config["timesteps"] == 8
    assert "mae" in ckpt.metrics["validation"]["model"]
    assert ckpt.meta["format_version"] == 1
    # unseen streams fall back to the pooled scaler
    assert ckpt.scaler_for("new-stream") is ckpt.default_scaler
    x = torch.randn(2, 8, 2)
    again = load_checkpoint(saved)
    torch.testing.assert_close(ckpt.model(x), again.model(x))


DAMAGED = {
    "no_scaling_mode": lambda p: p["scaling"].pop("mode"),
    "bad_scaling_mode": lambda p: p["scaling"].update(mode="sideways"),
    "scaling_not_a_dict": lambda p: p.update(scaling=["mode"]),
    "no_timesteps": lambda p: p["train_config"].pop("timesteps"),
    "text_timesteps": lambda p: p["train_config"].update(timesteps="8"),
    "residual_std_wrong_length": lambda p: p["metrics"]["validation"].update(
        residual_std_scaled=[1.0]
    ),
    "feature_names_not_text": lambda p: p["features"].update(targets=[1, 2]),
    "repeat_rate_wrong_length": lambda p: p["metrics"]["training"].update(repeat_rate=[0.1]),
    "repeat_rate_not_a_rate": lambda p: p["metrics"]["training"].update(
        repeat_rate=[2.0] * len(p["features"]["targets"])
    ),
}


def _corrupt(saved: Path, tmp: Path, how: str) -> Path:
    data = saved.read_bytes()
    bad = tmp / f"{how}.pt"
    if how == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        bad.write_bytes(b"\x00\x01not a checkpoint at all" * 50)
    elif how == "empty":
        bad.write_bytes(b"")
    elif how == "foreign":
        torch.save({"weights": torch.zeros(3)}, bad)
    elif how == "future":
        payload = torch.load(saved, weights_only=True)
        torch.save(payload | {"format_version": 99}, bad)
    elif how in DAMAGED:  # plain-data parts the engine reads later (found by fuzz_checkpoint)
        payload = torch.load(saved, weights_only=True)
        DAMAGED[how](payload)
        torch.save(payload, bad)
    elif how == "incompatible":
        payload = torch.load(saved, weights_only=True)
        payload["model_args"]["hidden"] = 16
        torch.save(payload, bad)
    return bad


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "truncated or corrupted"),
        ("garbage", "refused|truncated or corrupted"),
        ("empty", "empty file"),
        ("foreign", "not a detector checkpoint"),
        ("future", "format version 99"),
        ("incompatible", "incompatible checkpoint"),
        *[(how, "incompatible checkpoint") for how in DAMAGED],
    ],
)
def test_bad_checkpoints_give_one_clear_error(saved, tmp_path, how, message) -> None:
    bad = _corrupt(saved, tmp_path, how)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


class _Exploit:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "detector-checkpoint", "x": exploit}, evil)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(exploit))
    for path in (evil, legacy):
        with pytest.raises(CheckpointError, match="refused|truncated or corrupted"):
            load_checkpoint(path)
    assert not marker.exists()
