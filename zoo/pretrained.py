"""Pretrained names: the ``arch.tag`` table (timm's pattern) with the preprocessing each entry expects.

``PRETRAINED["crnn.mtat"]`` names where the weights live (a Hub id or a local published
folder) together with the settings they were trained with, so
``create_model("crnn", pretrained="mtat", ...)`` can refuse a model built with another
sample rate or transform instead of silently producing garbage. This module is data and
comparison only; ``zoo.factory`` loads the weights.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS, TASKS


@dataclass(frozen=True)
class PretrainedEntry:
    """Where ``arch.tag`` weights live and the preprocessing they were trained with.

    ``source`` is a Hub id (``owner/name``) or a local published folder. ``transform_params``
    lists only the settings that must match (others are free). ``uploaded=False`` marks an
    intended Hub id that does not exist yet, so a failed download says so instead of
    pointing at the network.
    """

    source: str
    sample_rate: int
    transform: str
    num_classes: int
    transform_params: dict = field(default_factory=dict)
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    task: str = "multiclass"
    label_names: tuple[str, ...] = ()
    dataset: str | None = None
    split: str | None = None
    uploaded: bool = True

    def __post_init__(self):
        if self.label_names and len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label names for {self.num_classes} classes")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

    def expectations(self, architecture: str) -> dict:
        """The config.json values a folder of these weights must have."""
        expected = {
            "architecture": architecture,
            "sample_rate": self.sample_rate,
            "transform": self.transform,
            "num_classes": self.num_classes,
            "transform_params": self.transform_params,
            "task": self.task,
        }
        if self.label_names:
            expected["label_names"] = list(self.label_names)
        return expected


# No musiczoo weights have been published yet, so the table starts empty rather than
# naming Hub repositories that do not exist. Add entries with ``register_pretrained``.
PRETRAINED: dict[str, PretrainedEntry] = {}


def register_pretrained(name: str, entry: PretrainedEntry, *, overwrite: bool = False) -> PretrainedEntry:
    """Add ``"arch.tag"`` to ``PRETRAINED`` (``create_model(arch, pretrained=tag)`` then finds it)."""
    arch, _, tag = name.partition(".")
    if not arch or not tag:
        raise ValueError(f"pretrained names are 'arch.tag', got {name!r}")
    if name in PRETRAINED and not overwrite:
        raise ValueError(f"pretrained {name!r} is already registered (pass overwrite=True to replace it)")
    PRETRAINED[name] = entry
    return entry


def list_pretrained(pattern: str = "*") -> list[str]:
    """Registered ``arch.tag`` names matching a glob pattern, e.g. ``"crnn.*"`` or ``"*gtzan*"``."""
    return sorted(n for n in PRETRAINED if fnmatch.fnmatch(n, pattern))


def mismatches(expected: dict, actual: dict) -> list[str]:
    """Settings that differ, as ``key=expected (got actual)``; ``transform_params`` is compared on the expected keys only."""
    bad = []
    for key, want in expected.items():
        if key == "transform_params":
            for p, v in want.items():
                have = actual["transform_params"].get(p)
                if not _same(v, have):
                    bad.append(f"transform_params.{p}={v!r} (got {have!r})")
        elif not _same(want, actual.get(key)):
            bad.append(f"{key}={want!r} (got {actual.get(key)!r})")
    return bad


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b
