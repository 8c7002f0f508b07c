"""``detector inspect``: describe a checkpoint (shape, features, training settings, metrics)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from detector.checkpoint import load_checkpoint

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="describe a model checkpoint: shape, features, scaling, training settings, metrics",
    )
    p.add_argument("model", help="checkpoint file written by `detector train`")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.model)
    info = {
        "model_args": ckpt.model.args.to_dict(),
        "targets": list(ckpt.targets),
        "covariates": list(ckpt.covariates),
        "calendar": list(ckpt.calendar),
        "scaling": {
            "mode": ckpt.scaling_mode,
            "kind": ckpt.default_scaler.kind,
            "streams": len(ckpt.stream_scalers),
        },
        "train_config": ckpt.train_config,
        "validation": {
            k: v
            for k, v in ckpt.metrics.get("validation", {}).items()
            if k in ("samples", "model", "persistence", "mae_ratio_vs_persistence")
        },
        **ckpt.meta,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        Console().print_json(data=info)
    return 0
