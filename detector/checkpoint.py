"""Self-describing model checkpoints, saved atomically and loaded without running pickle code.

A checkpoint is a ``torch.save`` of plain types and tensors only::

    {"format": "detector-checkpoint", "format_version": 1,
     "model_args": {...}, "state_dict": {...},
     "features": {"targets": [...], "covariates": [...], "calendar": [...]},
     "scaling": {"mode": "per_stream", "streams": {name: scaler}, "default": scaler},
     "train_config": {...}, "metrics": {...}, "detector_version": "...", "torch_version": "..."}

It is read with ``torch.load(weights_only=True)``, which refuses any pickled object that is not
a tensor or a plain container, so a hostile file cannot execute code. Every problem surfaces as
one :class:`CheckpointError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from detector import __version__
from detector.calendar import check_periods
from detector.errors import CheckpointError
from detector.level_tail import check_level_tails
from detector.model import LSTMForecaster, ModelArgs
from detector.scaling import Scaler

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "detector-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model_args", "state_dict", "features", "scaling", "train_config", "metrics")


@dataclass(eq=False)
class Checkpoint:
    """A loaded model with everything needed to feed it and read its output."""

    model: LSTMForecaster
    targets: tuple[str, ...]
    covariates: tuple[str, ...]
    scaling_mode: str  # "per_stream" or "global"
    stream_scalers: dict[str, Scaler]  # per_stream: the scaler fitted on each training stream
    default_scaler: Scaler  # global mode's scaler; per_stream: fallback fitted on all streams
    train_config: dict[str, object]
    metrics: dict[str, object]
    meta: dict[str, object]
    # Calendar periods whose phases the model reads after ``inputs``, computed from each
    # reading's event time (detector.calendar); not columns of the data.
    calendar: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The data columns the model reads, in order (the calendar phases follow them)."""
        return self.targets + self.covariates

    def scaler_for(self, stream: str) -> Scaler:
        """The scaler a stream was trained with, or the default one for an unseen stream."""
        return self.stream_scalers.get(stream, self.default_scaler)


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file + rename): a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_args": ckpt.model.args.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "features": {
            "targets": list(ckpt.targets),
            "covariates": list(ckpt.covariates),
            "calendar": list(ckpt.calendar),
        },
        "scaling": {
            "mode": ckpt.scaling_mode,
            "streams": {name: s.to_state() for name, s in ckpt.stream_scalers.items()},
            "default": ckpt.default_scaler.to_state(),
        },
        "train_config": ckpt.train_config,
        "metrics": ckpt.metrics,
        "detector_version": __version__,
        "torch_version": str(torch.__version__),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln]
        why = lines[0].split(":", 1)[-1].strip() if lines else type(exc).__name__
        raise CheckpointError(f"{path}: refused: not a plain-data checkpoint ({why})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(
            f"{path}: unreadable, truncated or corrupted ({type(exc).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a detector checkpoint (no format={FORMAT!r} marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}, this detector reads {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {missing}")
    return payload


def _check_plain(payload: dict, scaling: dict, names: tuple, n_targets: int) -> None:
    """The plain-data parts the engine reads later: a damaged one fails here, by name."""
    if scaling["mode"] not in ("per_stream", "global"):
        raise ValueError(f"scaling mode {scaling['mode']!r:.40} is not per_stream or global")
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError("feature names must be distinct non-empty strings")
    timesteps = payload["train_config"]["timesteps"]
    if type(timesteps) is not int or timesteps < 1:
        raise ValueError(
            f"train_config.timesteps must be a positive integer, got {timesteps!r:.40}"
        )
    validation = payload["metrics"].get("validation", {})
    std = validation.get("residual_std_scaled")
    if std is not None and (
        not isinstance(std, list)
        or len(std) != n_targets
        or not all(type(v) in (int, float) for v in std)
    ):
        raise ValueError(f"metrics.validation.residual_std_scaled must hold {n_targets} numbers")
    rate = payload["metrics"].get("training", {}).get("repeat_rate")
    if rate is not None and (
        not isinstance(rate, list)
        or len(rate) != n_targets
        or not all(v is None or (type(v) in (int, float) and 0 <= v <= 1) for v in rate)
    ):
        raise ValueError(
            f"metrics.training.repeat_rate must hold {n_targets} rates in [0, 1] (or null)"
        )
    tails = payload["metrics"].get("training", {}).get("level_tail")
    if tails is not None:
        check_level_tails(tails)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; a bad one raises :class:`CheckpointError` saying why."""
    path = Path(path)
    payload = _read(path)
    try:
        args = ModelArgs(**payload["model_args"])
        model = LSTMForecaster(args)
        model.load_state_dict(payload["state_dict"], strict=True)
        scaling = payload["scaling"]
        streams = {name: Scaler.from_state(s) for name, s in scaling["streams"].items()}
        default = Scaler.from_state(scaling["default"])
        targets = tuple(payload["features"]["targets"])
        covariates = tuple(payload["features"]["covariates"])
        calendar = check_periods(payload["features"].get("calendar", ()))  # none before them
        _check_plain(payload, scaling, targets + covariates, args.n_targets)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: incompatible checkpoint: {reason}") from None
    n_calendar = 2 * len(calendar)
    if (
        len(targets) != args.n_targets
        or len(targets) + len(covariates) + n_calendar != args.n_inputs
    ):
        raise CheckpointError(
            f"{path}: incompatible checkpoint: {len(targets)} targets + {len(covariates)} "
            f"covariates + {n_calendar} calendar phases do not match the model's "
            f"{args.n_targets}/{args.n_inputs}"
        )
    if any(s.offset.shape != (args.n_inputs,) for s in (default, *streams.values())):
        raise CheckpointError(f"{path}: incompatible checkpoint: scaler width != {args.n_inputs}")
    model.to(device).eval()
    meta = {k: payload.get(k) for k in ("format_version", "detector_version", "torch_version")}
    return Checkpoint(
        model,
        targets,
        covariates,
        scaling["mode"],
        streams,
        default,
        payload["train_config"],
        payload["metrics"],
        meta,
        calendar,
    )
