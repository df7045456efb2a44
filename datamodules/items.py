"""What every dataset reduces to: a list of :class:`Item` per split, before anything is decoded.

A data module names its clips (``split_items``); the audio cache decodes them. This small
type is the contract between the two, so neither imports the other for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from .primitives.audio import AudioSource

Target = Union[int, Sequence[int], Sequence[float]]


@dataclass(frozen=True)
class Item:
    """One clip of a dataset, before decoding.

    ``key`` is the clip's unique id (for folder datasets, its path relative to the data
    folder, so a cache survives moving the folder). ``source`` is a file path or the encoded
    bytes of the file. ``target`` is the class index (multiclass), a 0/1 sequence with one
    entry per label (multilabel) or a sequence of floats, one per target (regression).
    """

    key: str
    source: AudioSource
    target: Target


def plain_target(target: Target) -> int | list[int] | list[float]:
    """A target as JSON-ready ints (or floats, for regression), so equal targets compare and hash
    equal whatever their type."""
    if isinstance(target, (int, np.integer)):
        return int(target)
    return [int(v) if isinstance(v, (int, np.integer)) else float(v) for v in target]


def random_parts(items: list[Item], fractions: dict[str, float], seed: int,
                 group: Callable[[Item], str] | None = None) -> dict[str, list[Item]]:
    """``items`` split at random into the parts of ``fractions`` (e.g. ``{"val": 0.1, "test": 0.2}``,
    counts rounded) and ``train`` (the rest), each in the items' order; where a dataset publishes no split.

    Each clip's place in the draw is a hash of ``(seed, key)``, so the same seed gives the same
    parts on every machine, and a clip added or skipped moves at most one other across a border.
    With ``group`` (an item -> its group, e.g. the work a performance is of), whole groups are
    drawn instead, by the hash of ``(seed, group)``: no group is in two parts, and the fractions
    count groups.
    """
    check_fractions(fractions)
    group = group or (lambda it: it.key)
    groups = list(dict.fromkeys(group(it) for it in items))
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}\0{g}".encode()).digest())
    part_of, start = {}, 0
    for name, fraction in fractions.items():
        for g in order[start:start + round(len(groups) * fraction)]:
            part_of[g] = name
        start += round(len(groups) * fraction)
    return {name: [it for it in items if part_of.get(group(it), "train") == name] for name in ("train", "val", "test")}


def check_fractions(fractions: dict[str, float]) -> None:
    if not (all(0 <= f < 1 for f in fractions.values()) and sum(fractions.values()) < 1):
        raise ValueError(f"split fractions must be in [0, 1) and sum to less than 1, got {fractions}")
