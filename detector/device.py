"""Pick the torch device: ``cuda`` when present and asked for, CPU otherwise."""

from __future__ import annotations

import torch

from detector.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` if available else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for, but torch sees no CUDA GPU; use auto or cpu"
            )
        return torch.device(name)
    raise ConfigError(f"device must be one of {DEVICE_CHOICES} (or cuda:N), got {name!r}")
