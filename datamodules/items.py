"""What every dataset reduces to: a list of :class:`Item` per split, before anything is decoded.

A data module names its clips (``split_items``); the audio cache decodes them. This small
type is the contract between the two, so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .primitives.audio import AudioSource

Target = Union[int, Sequence[int]]


@dataclass(frozen=True)
class Item:
    """One clip of a dataset, before decoding.

    ``key`` is the clip's unique id (for folder datasets, its path relative to the data
    folder, so a cache survives moving the folder). ``source`` is a file path or the encoded
    bytes of the file. ``target`` is the class index (multiclass) or a 0/1 sequence with one
    entry per label (multilabel).
    """

    key: str
    source: AudioSource
    target: Target


def plain_target(target: Target) -> int | list[int]:
    """A target as JSON-ready ints, so equal targets compare and hash equal whatever their type."""
    return int(target) if isinstance(target, (int, np.integer)) else [int(v) for v in target]
