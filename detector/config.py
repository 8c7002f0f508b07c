"""Settings of ``detector run``: defaults < YAML file < environment < ``KEY=VALUE`` overrides.

Read once at the entry point into frozen dataclasses (:class:`WorkerConfig`) and passed down;
nothing below the entry point reads the environment.

**Environment.** ``DETECTOR_`` + the key's dotted path, upper-cased, ``.`` → ``_``:
``DETECTOR_KAFKA_BOOTSTRAP_SERVERS``, ``DETECTOR_ENGINE_ALERTS_OPEN_AT``. Kafka client options
are ``DETECTOR_KAFKA_CLIENT_OPTIONS_<NAME>`` (the option is ``<name>`` lower-cased), e.g.
``DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD``. Any other ``DETECTOR_`` variable is an
error, so a typo cannot fall back to a default unnoticed; the one exception is
``DETECTOR_CONFIG``, left to the CLI to name the YAML file.

**Text values** (environment, overrides, quoted YAML) convert by the field's type: booleans from
true/false/yes/no/1/0, tuples from comma lists, ``none`` or an empty string → None where a field
allows None. Client options given as text are read as YAML scalars (``true``, ``5000``), except
secret-named ones (:func:`is_secret`), which stay strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from detector.device import DEVICE_CHOICES
from detector.engine import EngineConfig
from detector.errors import ConfigError
from detector.scoring import SCORERS

__all__ = [
    "KafkaConfig",
    "ModelConfig",
    "LoopConfig",
    "MetricsConfig",
    "WorkerConfig",
    "load_config",
    "is_secret",
    "ENV_PREFIX",
    "ENV_ALLOWED",
]

ENV_PREFIX = "DETECTOR_"
ENV_ALLOWED = frozenset({"DETECTOR_CONFIG"})  # DETECTOR_ variables that name no setting
ClientOptions = tuple[tuple[str, Any], ...]  # sorted (name, value) pairs: hashable, frozen
_OPTIONS_ENV = ENV_PREFIX + "KAFKA_CLIENT_OPTIONS_"
_OPTIONS_PATH = ("kafka", "client_options")
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}
_SECRET_PARTS = ("password", "secret", "token", "credential")


def is_secret(name: str) -> bool:
    """Whether a client option holds a secret: its name contains password, secret, token or
    credential, or ends with ``_key`` (case-insensitive). ``ssl_keyfile`` (a path) is not."""
    low = name.lower()
    return any(p in low for p in _SECRET_PARTS) or low.endswith("_key") or low == "key"


@dataclass(frozen=True)
class KafkaConfig:
    """Where readings come from and where results go."""

    bootstrap_servers: str = "127.0.0.1:9092"  # comma-separated host:port list
    group_id: str = "detector"  # consumer group; members share the topics' partitions
    topics: tuple[str, ...] = ("readings",)  # topics of readings
    format: str = "json"  # record encoding of readings: "json" or "binary"
    alerts_topic: str = "detector.alerts"  # alert open/close events
    scores_topic: str | None = None  # per-reading scores; None = not published (volume)
    dead_letter_topic: str = "detector.dead-letters"  # records that cannot be decoded
    state_topic: str = "detector.state"  # compacted: engine state per partition
    max_poll_records: int = 5000  # records per poll, i.e. the largest engine batch
    poll_timeout_ms: int = 200  # longest wait for records in one poll
    session_timeout_ms: int = 10_000  # a member silent this long leaves the group
    heartbeat_interval_ms: int = 3000  # below session_timeout_ms (Kafka advises a third)
    max_record_bytes: int = 1_048_576  # larger records go to the dead-letter topic
    # Extra kafka-python options passed through verbatim (SASL/SSL live here). Not in repr,
    # which would print passwords: log WorkerConfig.redacted() instead.
    client_options: ClientOptions = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.client_options, Mapping):  # a dict is accepted and frozen
            object.__setattr__(self, "client_options", _freeze(self.client_options))
        _validate(self, "kafka")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )

    def client_options_dict(self) -> dict[str, Any]:
        """The client options as a fresh dict, to unpack into a kafka-python client."""
        return dict(self.client_options)


@dataclass(frozen=True)
class ModelConfig:
    """The checkpoint to serve."""

    path: str  # checkpoint file; required
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    reload_check_s: float = 10.0  # how often to look for a newer checkpoint file; 0 = never

    def __post_init__(self) -> None:
        _validate(self, "model")


@dataclass(frozen=True)
class LoopConfig:
    """The worker loop: checkpoints of engine state and shutdown."""

    checkpoint_interval_s: float = 30.0  # engine state is saved (and offsets committed) this often
    shutdown_timeout_s: float = 10.0  # longest wait for a final checkpoint on SIGTERM
    finetune_interval_s: float = 0.0  # online fine-tuning on recent normal windows; 0 = off
    finetune_budget_s: float = 2.0  # CPU seconds one fine-tuning round may take
    max_future_s: float = 86_400.0  # readings further ahead of the wall clock are rejected
    # torch intra-op threads on CPU. One leaves the other core to the Kafka client and the
    # engine's bookkeeping; more helps only when the machine has cores to spare.
    torch_threads: int = 1

    def __post_init__(self) -> None:
        _validate(self, "worker")


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    address: str = "127.0.0.1"  # listen address; 0.0.0.0 to be scraped from elsewhere
    port: int = 9108  # 0 = no endpoint
    top_streams: int = 0  # export the K most anomalous streams' scores (opt-in; at most 100)

    def __post_init__(self) -> None:
        _validate(self, "metrics")


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Every setting of ``detector run``; only ``model`` (its path) has no default."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    model: ModelConfig
    engine: EngineConfig = field(default_factory=EngineConfig)
    worker: LoopConfig = field(default_factory=LoopConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def __post_init__(self) -> None:
        # One poll is one engine batch, and a batch cannot hold more streams than the cap.
        if self.engine.max_streams < self.kafka.max_poll_records:
            raise ValueError(
                f"engine.max_streams ({self.engine.max_streams}) must be at least "
                f"kafka.max_poll_records ({self.kafka.max_poll_records}): a poll of that many "
                "distinct streams would not fit"
            )

    def redacted(self) -> dict[str, Any]:
        """Every setting as plain data for logging; secret client options read ``***``."""
        out = dataclasses.asdict(self)
        opts = self.kafka.client_options
        out["kafka"]["client_options"] = {k: "***" if is_secret(k) else v for k, v in opts}
        return out


# -- checks ----------------------------------------------------------------------------------
# Per key, run by the loader (to report each key) and by our sections' __post_init__.
Check = Callable[[Any], "str | None"]


def _at_least(lo: float) -> Check:
    return lambda v: None if v is None or v >= lo else f"must be >= {lo}, got {v}"


def _between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be in {lo}..{hi}, got {v}"


def _positive(v: Any) -> str | None:
    return None if v is None or v > 0 else f"must be > 0, got {v}"


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def _nonempty(v: Any) -> str | None:
    return None if v is None or len(v) else "must not be empty"


def _device(v: str) -> str | None:
    ok = v in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", v)
    return None if ok else f"must be one of {', '.join(DEVICE_CHOICES)} or cuda:N, got {v!r}"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else f"must be a port in 0..65535, got {v}"


def _unit(v: float) -> str | None:
    return None if 0 <= v <= 1 else f"must be in [0, 1], got {v}"


def _own_options(v: ClientOptions) -> str | None:
    # The client would get two values for these; the named setting must win, so say so.
    own = sorted({name for name, _ in v} & {f.name for f in fields(KafkaConfig)})
    return f"set {', '.join('kafka.' + n for n in own)} directly, not here" if own else None


_RULES: list[tuple[Check, str]] = [
    (_nonempty, "kafka.bootstrap_servers kafka.group_id kafka.topics kafka.alerts_topic"),
    (_nonempty, "kafka.scores_topic kafka.dead_letter_topic kafka.state_topic model.path"),
    (_nonempty, "metrics.address"),
    (_one_of("json", "binary"), "kafka.format"),
    (_positive, "kafka.poll_timeout_ms kafka.session_timeout_ms kafka.heartbeat_interval_ms"),
    (_positive, "kafka.max_record_bytes engine.gap_s engine.idle_s engine.scorer.clip"),
    (_positive, "engine.scorer.tail_clip"),
    (_positive, "worker.checkpoint_interval_s worker.shutdown_timeout_s worker.max_future_s"),
    (_positive, "worker.finetune_budget_s"),
    (_at_least(0), "worker.finetune_interval_s"),
    (_at_least(1), "kafka.max_poll_records engine.window engine.capacity engine.max_streams"),
    (_at_least(1), "worker.torch_threads"),
    (_at_least(1), "engine.scorer.horizon engine.scorer.short engine.scorer.long"),
    (_at_least(0), "model.reload_check_s engine.scorer.warmup engine.scorer.prior"),
    (_at_least(0), "engine.score_threads"),
    (_at_least(0), "engine.alerts.top_k engine.alerts.quiet engine.scorer.tail_prior"),
    (_at_least(1), "engine.scorer.tail_events"),
    (_device, "model.device engine.device"),
    (_one_of(*SCORERS), "engine.scorer.kind"),
    (_unit, "engine.missing_score"),
    (_port, "metrics.port"),
    (_between(0, 100), "metrics.top_streams"),
    (_own_options, "kafka.client_options"),
]
_CHECKS: dict[str, Check] = {key: check for check, keys in _RULES for key in keys.split()}


def _validate(obj: Any, section: str) -> None:
    problems = []
    for f in fields(obj):
        check = _CHECKS.get(f"{section}.{f.name}")
        if check and (msg := check(getattr(obj, f.name))):
            problems.append(f"{section}.{f.name}: {msg}")
    if problems:
        raise ValueError("; ".join(problems))


# -- loading ---------------------------------------------------------------------------------
class _Invalid(ValueError):
    """A value that cannot become its field's type; the message names the value."""


@dataclass
class _Context:
    problems: list[str] = field(default_factory=list)
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)  # key -> env var/override
    file_failed: bool = False

    def add(self, path: tuple[str, ...], msg: str) -> None:
        origin = self.origins.get(path)
        self.problems.append(f"{msg} (from {origin})" if origin else msg)


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] = os.environ,
    overrides: Sequence[str] = (),
) -> WorkerConfig:
    """Settings from defaults, the YAML file at ``path``, ``DETECTOR_*`` variables in ``env``
    and ``overrides`` such as ``"engine.alerts.open_at=0.6"``, later sources winning.

    Raises
    ------
    ConfigError
        Listing every problem found, one per line, each naming its key.
    """
    ctx = _Context()
    raw = _read_yaml(Path(path), ctx) if path is not None else {}
    _apply_env(raw, env, ctx)
    _apply_overrides(raw, overrides, ctx)
    config = _build(WorkerConfig, raw, (), ctx)
    if ctx.problems or config is None:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in ctx.problems))
    return config


def _read_yaml(path: Path, ctx: _Context) -> dict[str, Any]:
    ctx.file_failed = True  # until proven otherwise: keys it would set are not "required"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        ctx.problems.append(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}")
        return {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        ctx.problems.append(f"{path}: invalid YAML{where}: {getattr(e, 'problem', None) or e}")
        return {}
    if data is not None and not isinstance(data, dict):
        ctx.problems.append(
            f"{path}: must be a mapping of sections (kafka, model, ...), got {type(data).__name__}"
        )
        return {}
    ctx.file_failed = False
    return data or {}


@cache
def _env_names() -> dict[str, tuple[str, ...]]:
    """``DETECTOR_ENGINE_ALERTS_OPEN_AT`` -> ``("engine", "alerts", "open_at")``, every key."""

    def leaves(cls: type, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        out = []
        for name, tp in get_type_hints(cls).items():
            if dataclasses.is_dataclass(tp):
                out += leaves(tp, (*prefix, name))
            elif (*prefix, name) != _OPTIONS_PATH:  # options have a variable per option
                out.append((*prefix, name))
        return out

    return {ENV_PREFIX + "_".join(p).upper(): p for p in leaves(WorkerConfig, ())}


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], ctx: _Context) -> None:
    known = _env_names()
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_ALLOWED:
            continue
        if name in known:
            _put(raw, known[name], text, name, ctx)
        elif name.startswith(_OPTIONS_ENV) and len(name) > len(_OPTIONS_ENV):
            _put(raw, (*_OPTIONS_PATH, name[len(_OPTIONS_ENV) :].lower()), text, name, ctx)
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            ctx.problems.append(f"unknown environment variable {name}{hint}")


def _apply_overrides(raw: dict[str, Any], overrides: Sequence[str], ctx: _Context) -> None:
    for item in overrides:
        key, sep, text = item.partition("=")
        path = tuple(p.strip() for p in key.split("."))
        if not sep or not all(path):
            ctx.problems.append(f"override {item!r}: expected dotted.key=value")
            continue
        # The value is not echoed in the origin: it may be a password.
        _put(raw, path, text, f"override {key.strip()}=...", ctx)


def _put(raw: dict[str, Any], path: tuple[str, ...], text: str, origin: str, ctx: _Context) -> None:
    """Set a text value at ``path``, creating sections on the way (replacing non-mappings)."""
    if len(path) == 3 and path[:2] == _OPTIONS_PATH:
        text = _option_text(path[2], text)
    node = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = text
    ctx.origins[path] = origin


def _option_text(name: str, text: str) -> Any:
    if is_secret(name):  # a numeric password must stay a string
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, str | int | float | bool | list) else text


def _build(cls: type, raw: Any, path: tuple[str, ...], ctx: _Context) -> Any:
    """An instance of the dataclass ``cls`` from ``raw``, or None after adding its problems."""
    if not isinstance(raw, Mapping):
        ctx.add(path, f"{_dotted(path)}: must be a mapping, got {type(raw).__name__}")
        return None
    hints, names = get_type_hints(cls), [f.name for f in fields(cls)]
    before = len(ctx.problems)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            ctx.add((*path, str(key)), f"unknown key {_dotted((*path, str(key)))}{hint}")
    kwargs, incomplete = {}, False
    for f in fields(cls):
        key, tp = (*path, f.name), hints[f.name]
        if dataclasses.is_dataclass(tp):
            section = raw.get(f.name)  # None: a YAML section with every key commented out
            kwargs[f.name] = _build(tp, {} if section is None else section, key, ctx)
        elif f.name in raw:
            try:
                kwargs[f.name] = value = _convert(raw[f.name], tp)
                if (check := _CHECKS.get(_dotted(key))) and (msg := check(value)):
                    raise _Invalid(msg)
            except _Invalid as e:
                ctx.add(key, f"{_dotted(key)}: {e}")
        elif _required(f):
            incomplete = True
            if not ctx.file_failed:  # else the broken file may well have set it
                ctx.add(key, f"{_dotted(key)}: required")
    if incomplete or len(ctx.problems) > before:
        return None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # cross-field rules of the dataclasses themselves
        ctx.add(path, f"{_dotted(path)}: {e}")
        return None


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<top level>"


def _convert(value: Any, tp: Any) -> Any:
    """``value`` (YAML data or text) as type ``tp``; raises :class:`_Invalid`."""
    origin = get_origin(tp)
    if tp == ClientOptions:
        if not isinstance(value, Mapping):
            raise _Invalid(f"must be a mapping of option names to values, got {value!r}")
        return _freeze(value)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return _convert(value, next(a for a in get_args(tp) if a is not type(None)))
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise _Invalid(f"not a list: {value!r}")
        items = [i.strip() if isinstance(i, str) else i for i in items]
        return tuple(_convert(i, get_args(tp)[0]) for i in items if i != "")
    if tp is bool:
        return _to_bool(value)
    if tp is int:
        return _to_int(value)
    if tp is float:
        return _to_float(value)
    if tp is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)  # a YAML number where a name is meant, e.g. group_id: 2024
    raise _Invalid("must be set, got null" if value is None else f"not a string: {value!r}")


def _to_bool(value: Any) -> bool:
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _Invalid(f"not a boolean (true/false, yes/no, 1/0): {value!r}")


def _to_int(value: Any) -> int:
    number = value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            number = _parse_float(value)  # 1e6: PyYAML reads it as text
    if isinstance(number, int | float) and not isinstance(number, bool):
        if math.isfinite(number) and float(number).is_integer():
            return int(number)
    raise _Invalid(f"not an integer: {value!r}")


def _to_float(value: Any) -> float:
    number = math.nan if isinstance(value, bool) else _parse_float(value)
    if not math.isfinite(number):  # nan and inf would pass every range check
        raise _Invalid(f"not a number: {value!r}")
    return number


def _parse_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _freeze(options: Mapping[Any, Any]) -> ClientOptions:
    items = []
    for name, value in options.items():
        if not isinstance(name, str) or not name:
            raise _Invalid(f"option names must be strings, got {name!r}")
        items.append((name, tuple(value) if isinstance(value, list) else value))
    return tuple(sorted(items))
