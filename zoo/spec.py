"""What a model is: :class:`ModelSpec`, one frozen dataclass per model, and the one schema that checks it.

Every model carries its spec at ``model.spec`` from the moment ``zoo.factory.build_model``
builds it: the architecture and its settings, the transform and every front-end setting,
the sample rate, the chunk length, the task and label names, and where its weights came
from (:class:`Provenance`). Everything downstream reads the spec and nothing else: the
task builds its net from one, a checkpoint and a published ``config.json`` store
:meth:`ModelSpec.to_config` and are read back with :meth:`ModelSpec.from_config` (the one
serialisation and the one schema check), and the model card, ``predict``, the recommender's
library and the listening room read its fields.

A new model setting is one field of :class:`ModelSpec` and one entry of :data:`CONFIG_SCHEMA`
(and, for YAML configs to set it, one argument of ``MusicTask``, which builds its spec with
:meth:`ModelSpec.from_arguments`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS, TASKS, default_label_names

from .frontends import FRONTENDS, Frontend, list_transforms

#: 2: the synthetic flag is called ``synthetic`` (version 1 called it ``synthetic_data``).
CONFIG_VERSION = 2
#: The file a published model's spec is written to (a checkpoint's spec is read from its hyperparameters).
CONFIG_NAME = "config.json"


class ModelError(ValueError):
    """A model spec, published folder, Hub repository or checkpoint that cannot be used; the
    message names the file and says why."""


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from: the data module's dataset, split and whether it was
    synthetic, and the test metrics recorded for them (``{name: value}``, empty when none were).

    A model trained from another one's weights (``musiczoo fit --model.init_from SOURCE``, see
    ``zoo.transfer``) records that source as given in ``init_from``, and ``freeze`` is
    ``"encoder"`` for a linear probe (only the head trained) or None for fine-tuning; both are
    None for a model trained from scratch."""

    dataset: str | None = None
    split: str | None = None
    synthetic: bool | None = None
    metrics: dict = field(default_factory=dict)
    init_from: str | None = None
    freeze: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "metrics", dict(self.metrics or {}))


#: The spec's fields that decide the weights' shapes and the front-end: two models with equal
#: values here and equal weights compute the same function (the library's model fingerprint).
BUILD_FIELDS = ("architecture", "model_params", "num_classes", "transform", "transform_params", "sample_rate")


@dataclass(frozen=True)
class ModelSpec:
    """A model's identity: what to build, what it takes in and what its outputs mean.

    ``transform_params`` holds every front-end setting once a model is built (defaults
    filled in by the front-end); ``label_names`` defaults to the class indices (for
    ``regression``, they name the targets, and ``target_scale`` is the (lo, hi) scale the data
    declared, e.g. DEAM's 1-9; see :func:`~datamodules.primitives.chunks.probabilities`). Build a
    model from one with ``zoo.factory.build_model``; change one with :meth:`replace`.
    """

    architecture: str
    transform: str = "mel"
    transform_params: dict = field(default_factory=dict)
    sample_rate: int = 22050
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    num_classes: int = 10
    task: str = "multiclass"
    label_names: tuple[str, ...] = ()
    model_params: dict = field(default_factory=dict)
    provenance: Provenance = Provenance()
    target_scale: tuple[float, float] | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen: normalise once)
        set_("transform_params", dict(self.transform_params or {}))
        set_("model_params", dict(self.model_params or {}))
        set_("label_names", tuple(self.label_names or default_label_names(self.num_classes)))
        if self.target_scale is not None:
            set_("target_scale", tuple(float(v) for v in self.target_scale))
        if isinstance(self.chunk_seconds, int) and not isinstance(self.chunk_seconds, bool):
            set_("chunk_seconds", float(self.chunk_seconds))
        if isinstance(self.provenance, dict):  # as a data module links it in
            set_("provenance", Provenance(**{k: self.provenance.get(k) for k in PROVENANCE_FIELDS}))
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label names for {self.num_classes} classes")

    def replace(self, **changes) -> ModelSpec:
        """A copy with ``changes``; ``dataset``, ``split`` and ``synthetic`` change the provenance."""
        moved = {k: changes.pop(k) for k in PROVENANCE_FIELDS if k in changes}
        if moved:
            changes["provenance"] = dataclasses.replace(changes.get("provenance", self.provenance), **moved)
        return dataclasses.replace(self, **changes)

    def build_settings(self) -> dict:
        """The :data:`BUILD_FIELDS` as plain data."""
        return {k: v for k, v in self.to_config().items() if k in BUILD_FIELDS}

    def to_config(self) -> dict:
        """The spec as plain JSON data, flat, as ``config.json`` and a checkpoint hold it (the one serialisation)."""
        return {
            "architecture": self.architecture, "model_params": dict(self.model_params), "num_classes": self.num_classes,
            "transform": self.transform, "transform_params": dict(self.transform_params),
            "sample_rate": self.sample_rate, "chunk_seconds": self.chunk_seconds, "task": self.task,
            "label_names": list(self.label_names),
            "target_scale": list(self.target_scale) if self.target_scale is not None else None,
            **dataclasses.asdict(self.provenance),
        }

    @classmethod
    def from_arguments(cls, arguments) -> ModelSpec:
        """The spec in a mapping that holds its fields by name, e.g. ``MusicTask``'s hyperparameters
        (a field given as None keeps its default; keys that are no field are ignored). Trusted input:
        an untrusted file goes through :meth:`from_config`."""
        fields = {k: arguments[k] for k in SPEC_FIELDS if arguments.get(k) is not None}
        return cls(**fields, provenance=arguments.get("provenance") or {})

    @classmethod
    def from_config(cls, config: dict, source: str | Path = CONFIG_NAME) -> ModelSpec:
        """The spec a config (``config.json``, a checkpoint's record) describes, after the schema
        check: a config that does not fit is a :class:`ModelError` of one line naming ``source``."""
        config = validate_config(config, source)
        fields = {k: config[k] for k in SPEC_FIELDS if k in config}
        provenance = Provenance(**{k: config.get(k) for k in PROVENANCE_FIELDS})
        return cls(**fields, provenance=provenance)


PROVENANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Provenance))
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec) if f.name != "provenance")


# ---- the schema ---------------------------------------------------------------------------
# One table of checks, used by every reader (ModelSpec.from_config: a published config.json, a
# checkpoint's record) and by zoo.hub before anything is written. A check returns None when
# the value is fine, else what the value must be; the error is then one line naming the file
# and the field: "<file>: chunk_seconds must be a positive number of seconds ..., got 'abc'".
MAX_NUM_CLASSES = 100_000
SAMPLE_RATES = (1000, 384_000)
MAX_CHUNK_SECONDS = 600.0
#: The head (embedding x classes) and the whole model must stay below these parameter counts
#: (checked by ``zoo.factory.build_model`` before any weight is allocated).
MAX_HEAD_PARAMETERS = 100_000_000
MAX_PARAMETERS = 500_000_000
#: Keys a config.json must have (the others have defaults).
REQUIRED_KEYS = ("architecture", "transform", "transform_params", "sample_rate", "num_classes", "label_names", "task")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
#: What ``--model.freeze`` may freeze (``zoo.transfer``): the encoder, for a linear probe.
FREEZE_CHOICES = ("encoder",)
#: ``timm/<name>``: a plain timm architecture name; a source prefix (``hf-hub:``, ``local-dir:``) or a
#: path would make timm download or read files while the model is built.
_TIMM_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(lo, hi, what="", note=""):
    expected = f"must be an integer{what} from {lo} to {hi}{note}"
    return lambda v, c: None if _is_int(v) and lo <= v <= hi else expected


def _optional(types: tuple, name: str):
    return lambda v, c: None if v is None or isinstance(v, types) else f"must be {name} or null"


def _one_of(choices_fn):
    def check(v, c):
        choices = choices_fn()
        return None if isinstance(v, str) and v in choices else f"must be one of {', '.join(choices)}"
    return check


def _check_architecture(v, c):
    if not isinstance(v, str) or not v:
        return "must be a model name (a string)"
    if v.startswith("timm/"):
        if not _TIMM_NAME.fullmatch(v[len("timm/"):]):
            return ("must be a plain timm architecture name such as timm/resnet18 (a Hub or local source such as "
                    "timm/hf-hub:... is refused: timm would download or read files while building the model)")
        return None
    from . import models  # noqa: F401  (the families register themselves; imported late: hub only reads names)
    from .registry import list_models

    names = list_models()
    return None if v in names else f"must be one of {', '.join(names)} or timm/<timm model>"


def _check_model_params(v, c):
    if not isinstance(v, dict) or not all(isinstance(k, str) and k.isidentifier() for k in v):
        return "must be an object of keyword arguments of the architecture"
    return None


def _check_chunk_seconds(v, c):
    ok = _is_number(v) and 0 < v <= MAX_CHUNK_SECONDS and v * c.get("sample_rate", 1) >= 1  # at least one sample
    return None if ok else f"must be a positive number of seconds (at most {MAX_CHUNK_SECONDS:g})"


def _check_label_names(v, c):
    if not isinstance(v, list) or not all(isinstance(n, str) and n for n in v):
        return "must be a list of non-empty strings, one per class"
    if len(v) != c.get("num_classes"):
        return _Worded(f"must name each of the {c.get('num_classes')} classes (num_classes), got {len(v)} names")
    if len(set(v)) != len(v):
        return "must not repeat a name"
    return None


def _check_target_scale(v, c):
    if v is None:
        return None
    ok = isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] < v[1]
    return None if ok else "must be null or [lo, hi], two numbers with lo < hi"


def _check_metrics(v, c):
    ok = isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, (int, float)) for k, x in v.items())
    return None if ok else "must be a flat {name: number} object"


def _hz(c) -> float:
    return c["sample_rate"] / 2


def _number_in(lo, hi_fn, what, lo_open=False):
    def check(v, params, c):
        hi = hi_fn(params, c)
        ok = _is_number(v) and (v > lo if lo_open else v >= lo) and v <= hi * (1 + 1e-9)
        return None if ok else f"{what} ({'above' if lo_open else 'from'} {lo:g} to {hi:g})"
    return check


def _int_in(lo, hi_fn, what):
    def check(v, params, c):
        hi = hi_fn(params, c)
        return None if _is_int(v) and lo <= v <= hi else f"{what} from {lo} to {hi}"
    return check


#: transform_params: each front-end parameter and what it must be (keys a front-end does not take are refused).
TRANSFORM_PARAM_CHECKS = {
    "n_fft": _int_in(16, lambda p, c: 32768, "must be an integer number of samples"),
    "hop_length": _int_in(1, lambda p, c: 32768, "must be an integer number of samples"),
    "n_mels": _int_in(1, lambda p, c: 512, "must be an integer number of Mel bands"),
    "n_mfcc": _int_in(1, lambda p, c: p.get("n_mels", 128) if _is_int(p.get("n_mels", 128)) else 512,
                      "must be an integer number of coefficients (at most n_mels)"),
    "f_min": _number_in(0, lambda p, c: _hz(c), "must be a frequency in Hz"),
    "f_max": lambda v, p, c: None if v is None else _number_in(
        p.get("f_min", 0) if _is_number(p.get("f_min", 0)) else 0, lambda p, c: _hz(c),
        "must be a frequency in Hz above f_min, at most half the sample rate", lo_open=True)(v, p, c),
    "top_db": lambda v, p, c: None if v is None else _number_in(0, lambda p, c: 1000, "must be null or a number of dB",
                                                                lo_open=True)(v, p, c),
    "pad_mode": lambda v, p, c: None if v in PAD_MODES else f"must be one of {', '.join(PAD_MODES)}",
    "n_octaves": _int_in(1, lambda p, c: 10, "must be an integer number of octaves"),
    "bins_per_octave": _int_in(1, lambda p, c: 96, "must be an integer number of bins per octave"),
}


def transform_param_names(transform: str) -> list[str]:
    """The parameters a front-end takes (its constructors' keywords, the sample rate aside)."""
    names = set()
    for cls in FRONTENDS[transform].__mro__:
        if isinstance(cls, type) and issubclass(cls, Frontend):
            names |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "sample_rate")}
    return sorted(names)


def _check_transform_params(v, c):
    if not isinstance(v, dict):
        return "must be an object of front-end parameters"
    known = transform_param_names(c["transform"])
    for key, value in v.items():
        if key not in known:
            return _Worded(f"holds {key!r}, which the {c['transform']!r} front-end does not take "
                           f"(its parameters: {', '.join(known)})")
        check = TRANSFORM_PARAM_CHECKS.get(key)
        problem = check(value, v, c) if check else (None if _is_number(value) or value is None else "must be a number")
        if problem:
            return _Worded(f"{problem}, got {_shown(value)}", field=f"transform_params.{key}")
    return None


class _Worded(str):
    """A problem worded in full (validate_config appends no ``, got <value>``), optionally of a
    field inside the field checked (``transform_params.n_fft``)."""

    def __new__(cls, text: str, field: str | None = None):
        worded = super().__new__(cls, text)
        worded.field = field
        return worded


#: (field, required, check(value, config)); checked in this order, so a check may rely on the fields before it.
CONFIG_SCHEMA = [
    ("musiczoo_config_version", False, _integer(1, CONFIG_VERSION, note=" (a newer musiczoo writes higher versions)")),
    ("architecture", True, _check_architecture),
    ("model_params", False, _check_model_params),
    ("num_classes", True, _integer(1, MAX_NUM_CLASSES)),
    ("transform", True, _one_of(list_transforms)),
    ("sample_rate", True, _integer(SAMPLE_RATES[0], SAMPLE_RATES[1], " number of Hz")),
    ("transform_params", True, _check_transform_params),
    ("chunk_seconds", False, _check_chunk_seconds),
    ("task", True, _one_of(lambda: TASKS)),
    ("label_names", True, _check_label_names),
    ("target_scale", False, _check_target_scale),
    ("dataset", False, _optional((str,), "a string")),
    ("split", False, _optional((str,), "a string")),
    ("synthetic", False, _optional((bool,), "true or false")),
    ("metrics", False, _check_metrics),
    ("init_from", False, _optional((str,), "a string")),
    ("freeze", False, lambda v, c: None if v is None or v in FREEZE_CHOICES else
     f"must be null or one of {', '.join(FREEZE_CHOICES)}"),
    ("num_parameters", False, _integer(0, 10**12)),
    ("versions", False, lambda v, c: None if isinstance(v, dict) else "must be an object"),
    ("git_commit", False, _optional((str,), "a string")),
]


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_config(config: dict, source: str | Path = CONFIG_NAME, *, only: tuple[str, ...] | None = None) -> dict:
    """``config`` if it fits the schema (``CONFIG_SCHEMA``), else a :class:`ModelError` of one line naming
    ``source`` (the file) and the first field that does not fit. Runs before any model is built.
    ``only`` checks just those fields."""
    if not isinstance(config, dict):
        raise ModelError(f"{source}: must hold a JSON object, got {type(config).__name__}")
    for key, required, check in CONFIG_SCHEMA:
        if only is not None and key not in only:
            continue
        if key not in config:
            if required:
                raise ModelError(f"{source}: missing {key}")
            continue
        problem = check(config[key], config)
        if problem:
            if isinstance(problem, _Worded):
                raise ModelError(f"{source}: {problem.field or key} {problem}")
            raise ModelError(f"{source}: {key} {problem}, got {_shown(config[key])}")
    return config


