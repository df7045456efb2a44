"""Where a dataset's split lists live, and the one place where their word for a split meets ours.

No list is shipped in the package: they belong to other projects. GTZAN's fault-filtered split
comes from the installed ``torchaudio`` (:mod:`datamodules.gtzan`); every other list is fetched
with the dataset by ``musiczoo download`` (or written by ``musiczoo synth`` for synthetic data)
into ``<root>/splits/``, beside the audio, under its source's file name.

The sources (Kereliuk, Sturm & Larsen's GTZAN lists, Jongpil Lee's MTAT lists) call the
validation split "valid"; in code it is "val", as in every data module and loader.
:func:`split_file_name` is the only translation between the two words.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: The splits every list comes in, by the names the code uses.
LISTED_SPLITS = ("train", "val", "test")
#: Our name of a split -> the word the list files (and their sources) use for it.
_FILE_WORD = {"train": "train", "val": "valid", "test": "test"}
#: The folder beside a dataset's audio that holds its split lists.
LISTS_FOLDER = "splits"


class MissingListError(FileNotFoundError):
    """A split list that is not on disk; the message is one line naming the command that fetches it."""


def split_file_name(pattern: str, split: str) -> str:
    """``pattern`` with ``{split}`` replaced by the files' word for ``split`` (one of
    :data:`LISTED_SPLITS`): ``split_file_name("top50_{split}.tsv", "val")`` is ``"top50_valid.tsv"``."""
    if split not in _FILE_WORD:
        raise ValueError(f"unknown split {split!r}, expected one of {LISTED_SPLITS}")
    return pattern.format(split=_FILE_WORD[split])


def lists_folder(root: str | os.PathLike) -> Path:
    """``<root>/splits``: where ``musiczoo download`` and ``musiczoo synth`` put a dataset's lists."""
    return Path(root).expanduser() / LISTS_FOLDER


def find_list(roots: Iterable[str | os.PathLike], name: str, what: str, dataset: str) -> Path:
    """``<root>/splits/<name>`` for the first of ``roots`` that has it.

    ``roots`` are the places a user may have pointed at (the dataset root, the folder holding
    the genre folders, ...); ``what`` names the list for the error, e.g. "GTZAN stratified split".
    """
    roots = list(dict.fromkeys(Path(r).expanduser() for r in roots))
    for root in roots:
        if (lists_folder(root) / name).is_file():
            return lists_folder(root) / name
    where = lists_folder(roots[0]) if roots else Path(LISTS_FOLDER)
    raise MissingListError(f"{what} needs its lists ({name} is not in {where}): "
                           f"run musiczoo download {dataset} --root DIR (or --lists-only)")


def write_split_list(path: Path, entries: Iterable[str]) -> Path:
    """One entry per line, LF, trailing newline: the format of the GTZAN lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{entry}\n" for entry in entries), encoding="ascii")
    return path
