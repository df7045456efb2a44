"""What every dataset reduces to: a list of :class:`Item` per split, before anything is decoded.

A data module names its clips (``split_items``); the audio cache decodes them. This small
type is the contract between the two, so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

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
