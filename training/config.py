"""Typed configuration of a training run: sections ``train``, ``model`` and ``data``.

A run is described by one YAML file with those three sections (``configs/*.yaml``) plus command-line
overrides ``--set section.key[.key...]=value`` (the value is read as YAML, e.g. ``train.steps=200``,
``data.batch_sizes.mrc=16``, ``train.milestones=[1000,2000]``). Every value, from the file or an override,
is checked against the type of its field; an unknown key raises ``ConfigError``.

* ``model``: ``preset`` (albef, realbef, xvlm, rexvlm; default realbef), ``tiny`` (the preset's tiny test
  sizes, ``ModelConfig.tiny``), then any ``ModelConfig`` field, nested (``vision.init_path``,
  ``weights.mrc``...), applied on top of the preset.
* ``data``: ``DataConfig`` fields with an optional ``preset`` (batch sizes and ratios of ``realbef`` or
  ``rexvlm``, under which given ``batch_sizes`` / ``ratios`` entries are merged type by type);
  ``data.seed`` defaults to ``train.seed``.
* ``train``: ``TrainConfig``; ``betas`` default to the model family's (``ModelConfig.adam_betas``).

``RunConfig.to_dict()`` is the resolved configuration (presets expanded); ``RunConfig.from_dict`` reads it
back to an equal config. The trainer saves it as ``config.yaml`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from sgverbalise.errors import InputError
from sgverbalise.training.data.sources import SourceConfig
from sgverbalise.training.data.streams import PRESETS as DATA_PRESETS
from sgverbalise.training.data.streams import DataConfig
from sgverbalise.training.models import PRESETS as MODEL_PRESETS
from sgverbalise.training.models import ModelConfig
from sgverbalise.training.schedule import SCHEDULES

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(InputError):
    """A configuration value of the wrong type, an unknown key or an inconsistent setting."""


@dataclass
class TrainConfig:
    """The optimisation and bookkeeping of a run (the paper's AdamW recipe by default)."""

    steps: int = 200_000
    lr: float = 1e-4
    min_lr: float = 0.0
    betas: tuple[float, float] | None = None  # None: the model family's (ALBEF 0.9/0.995, X-VLM 0.9/0.95)
    eps: float = 1e-8
    weight_decay: float = 0.02
    warmup: int = 5000
    schedule: str = "cosine"  # after warm-up: cosine | linear | constant (training.schedule)
    grad_accum: int = 1
    clip: float | None = 1.0  # max global gradient norm; None: no clipping
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU | bf16 | fp32
    device: str = "auto"  # auto: CUDA (this rank's LOCAL_RANK device) when available, else CPU
    alpha_warmup: int = 0  # steps over which the distillation weight ramps up from 0 (ALBEF: one epoch)
    # At this step (0: never) the trainer checks the health of the last ``log_every`` steps and logs a warning
    # when the ITC image features collapsed (mean pairwise cosine above 0.95) or ITM does not separate its
    # positives from its negatives (mean p(match) gap below 0.05); metrics.jsonl has both values every step.
    health_check_step: int = 300
    log_every: int = 50  # TensorBoard scalars, loader counters and a log line every that many steps
    ckpt_every: int = 1000
    keep_last: int = 3
    milestones: list[int] = field(default_factory=list)  # steps whose checkpoints are always kept
    milestone_every: int = 0  # also keep every checkpoint whose step is a multiple of this (0: none)
    seed: int = 0
    out: str = "out/train"
    resume: bool = False  # continue from the latest checkpoint in ``out``
    stop_after: int | None = None  # leave the loop after this step, as if killed (schedule still over steps)
    relations: str | None = None  # relations.json for num_relations; default: the first MRC source's
    threads: int | None = None  # torch intra-op threads of each process
    tensorboard: bool = True  # when torch.utils.tensorboard is importable
    progress: bool = True  # tqdm progress bar on rank 0

    def __post_init__(self) -> None:
        if self.betas is not None:
            self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.milestones = sorted(int(m) for m in self.milestones)
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.warmup >= 0, "warmup must be >= 0"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.ckpt_every >= 1, "ckpt_every must be >= 1"),
            (self.keep_last >= 1, "keep_last must be >= 1"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.health_check_step >= 0, "health_check_step must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {sorted(SCHEDULES)}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}"),
            (self.clip is None or self.clip > 0, "clip must be positive (or null: off)"),
            (self.betas is None or len(self.betas) == 2, "betas must be two numbers"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"train: {message}")


@dataclass
class RunConfig:
    """The three sections of a run."""

    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=lambda: MODEL_PRESETS["realbef"]())
    data: DataConfig | None = None  # required to train; optional so a config can be checked without shards

    def __post_init__(self) -> None:
        if self.data is not None and self.data.image_size != self.model.vision.image_size:
            raise ConfigError(
                f"data.image_size {self.data.image_size} differs from model.vision.image_size "
                f"{self.model.vision.image_size}"
            )
        if self.data is not None:
            longest = max(self.data.max_text_len[k] for k in self.data.active_types())
            if longest > self.model.text.max_position:
                raise ConfigError(
                    f"data.max_text_len allows {longest} tokens, model.text.max_position is "
                    f"{self.model.text.max_position}"
                )
            unused = [k for k in self.data.active_types() if k not in self.model.batch_types]
            if unused:
                raise ConfigError(f"{self.model.name} does not train on {unused} batches: set ratios to 0")

    @property
    def betas(self) -> tuple[float, float]:
        """AdamW betas: ``train.betas`` when set, else the model family's."""
        return self.train.betas or self.model.adam_betas

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (YAML/JSON), presets resolved."""
        out: dict[str, Any] = {"train": plain(dataclasses.asdict(self.train)), "model": self.model.to_dict()}
        if self.data is not None:
            out["data"] = plain(dataclasses.asdict(self.data))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """A config from plain values (a YAML document); every value is type-checked first."""
        values = check_tree(values)
        train = TrainConfig(**values.get("train", {}))
        model = build_model_config(values.get("model", {}))
        data = None
        if values.get("data"):
            data_values = _with_data_preset({"seed": train.seed, **values["data"]})
            try:
                data = DataConfig.from_dict(data_values)
            except (KeyError, TypeError, ValueError) as exn:
                raise ConfigError(f"data: {exn}") from exn
        return cls(train=train, model=model, data=data)

    def to_yaml(self) -> str:
        """The resolved config as a YAML document."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def build_model_config(values: dict[str, Any]) -> ModelConfig:
    """``ModelConfig`` of a model section: the preset (tiny sizes with ``tiny``), then the given fields."""
    values = dict(values)
    preset = values.pop("preset", None) or "realbef"
    tiny = values.pop("tiny", False)
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"model.preset {preset!r} is not one of {sorted(MODEL_PRESETS)}")
    base = MODEL_PRESETS[preset]()
    if tiny:
        base = base.tiny()
    try:
        return ModelConfig.from_dict(_merge(base.to_dict(), values))
    except (TypeError, ValueError) as exn:
        raise ConfigError(f"model: {exn}") from exn


def _with_data_preset(values: dict[str, Any]) -> dict[str, Any]:
    """The data section with a preset's batch sizes and ratios merged under the given ones (per type)."""
    name = values.get("preset")
    if not name:
        return values
    if name not in DATA_PRESETS:
        raise ConfigError(f"data.preset {name!r} is not one of {sorted(DATA_PRESETS)}")
    sizes, ratios = DATA_PRESETS[name]
    values = {k: v for k, v in values.items() if k != "preset"}
    values["batch_sizes"] = {**sizes, **values.get("batch_sizes", {})}
    values["ratios"] = {**ratios, **values.get("ratios", {})}
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """A run config from a YAML file (or the defaults) and ``section.key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping with train/model/data sections")
        values = loaded
    values = check_tree(values)
    for item in overrides or []:
        apply_override(values, item)
    return RunConfig.from_dict(values)


def apply_override(values: dict[str, Any], item: str) -> None:
    """Set ``section.key...=value`` in ``values`` (the value read as YAML, checked against the field type)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    dotted, text = item.split("=", 1)
    path = [p for p in dotted.strip().split(".") if p]
    if len(path) < 2:
        raise ConfigError(f"override {item!r} needs a section and a key (e.g. train.steps=100)")
    hint = field_type(path)
    value = coerce(_parse_text(text, hint), hint, dotted)
    node = values
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {} if child is None else _as_dict(child, key)
        node = child
    node[path[-1]] = value


# ---------------------------------------------------------------------------------------------- type checks

_SECTIONS: dict[str, tuple[type, dict[str, Any]]] = {
    "train": (TrainConfig, {}),
    "model": (ModelConfig, {"preset": Union[str, None], "tiny": bool}),  # noqa: UP007
    "data": (DataConfig, {"preset": Union[str, None]}),  # noqa: UP007
}


def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def field_type(path: list[str]) -> Any:
    """The declared type of the field at ``path`` (``["data", "batch_sizes", "mrc"]`` -> int)."""
    section = path[0]
    if section not in _SECTIONS:
        raise ConfigError(f"unknown section {section!r}; known: {sorted(_SECTIONS)}")
    kind, extra = _SECTIONS[section]
    hints = {**_hints(kind), **extra}
    hint: Any = None
    for depth, key in enumerate(path[1:], start=1):
        where = ".".join(path[:depth])
        if hints is not None:
            if key not in hints:
                raise ConfigError(f"unknown option {where}.{key}; known: {sorted(hints)}")
            hint = hints[key]
        else:
            hint = _dict_value_type(hint, f"{where}.{key}")
        hint = _strip_optional(hint)
        hints = _hints(hint) if dataclasses.is_dataclass(hint) else None
    return hint


def _dict_value_type(hint: Any, where: str) -> Any:
    if typing.get_origin(hint) is dict:
        return typing.get_args(hint)[1]
    raise ConfigError(f"{where}: {_name(hint)} has no sub-keys")


def _strip_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if _is_union(hint) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and (dataclasses.is_dataclass(rest[0]) or typing.get_origin(rest[0]) is dict):
            return rest[0]
    return hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is Union or isinstance(hint, types.UnionType)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _parse_text(text: str, hint: Any) -> Any:
    """An override's text as YAML; kept as written when the field is a string."""
    parsed = yaml.safe_load(text) if text.strip() else None
    accepts_str = hint is str or (_is_union(hint) and str in typing.get_args(hint))
    if accepts_str and parsed is not None and not isinstance(parsed, (list, dict)):
        return text.strip()
    return parsed


def check_tree(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every section's fields coerced to their declared types (ConfigError otherwise)."""
    if not isinstance(values, dict):
        raise ConfigError("a config is a mapping of sections")
    out: dict[str, Any] = {}
    for section, body in values.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section {section!r}; known: {sorted(_SECTIONS)}")
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"section {section} must be a mapping")
        kind, extra = _SECTIONS[section]
        out[section] = _coerce_fields(body, {**_hints(kind), **extra}, section)
    return out


def _coerce_fields(values: dict, hints: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(f'{where}.{k}' for k in unknown)}")
    return {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` (int, float, bool, str, unions, tuple/list/dict of those, dataclasses)."""
    if hint is Any or hint is object:
        return value
    if _is_union(hint):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: null is not allowed (expected {_name(hint)})")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except ConfigError as exn:
                errors.append(str(exn))
        raise ConfigError(f"{where}: {value!r} is not a {_name(hint)}")
    if dataclasses.is_dataclass(hint):
        if hint is SourceConfig and isinstance(value, (str, list)):
            return value  # a shard spec: SourceConfig.from_value reads it
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {hint.__name__} fields, got {value!r}")
        return _coerce_fields(value, _hints(hint), where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        variadic = bool(args) and args[-1] is Ellipsis
        if not isinstance(value, (list, tuple)) or (args and not variadic and len(value) != len(args)):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        item_types = [args[0]] * len(value) if variadic else list(args) or [Any] * len(value)
        pairs = enumerate(zip(value, item_types, strict=True))
        return tuple(coerce(v, t, f"{where}[{i}]") for i, (v, t) in pairs)
    if origin is list:
        if hint == list[SourceConfig] and isinstance(value, (str, dict)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: coerce(v, args[1], f"{where}.{k}") for k, v in value.items()} if args else dict(value)
    return _scalar(value, hint, where)


def _scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: expected {_name(hint)}, got {value!r}")


# ---------------------------------------------------------------------------------------------- helpers


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` merged in, nested mappings merged key by key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _as_dict(value: Any, key: str) -> dict:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise ConfigError(f"{key} is a value, not a section")


def plain(value: Any) -> Any:
    """Tuples to lists, recursively (for YAML and JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
