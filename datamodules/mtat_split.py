"""The MagnaTagATune top-50 split (15,244 / 1,529 / 4,332 clips): derived from its sources,
read from beside the release.

The literature's split (Lee et al. 2017; Won et al. 2020 use the same valid and test clips) is
published as Jongpil Lee's pickled path lists (``*_list_pub.cP``, paths with ``.npy`` for
``.mp3``), and the clip ids come from musicnn's clip index (``index_mtt.tsv``: all 25,863 clips
in ``annotations_final.csv`` order). ``musiczoo download mtat`` fetches those files into
``<root>/splits/`` (each checked against its SHA-256) and :func:`derive_top50_split` writes
``top50_{train,valid,test}.tsv`` (``clip_id<TAB>mp3_path``, sorted by annotations row) there;
the data module, ``musiczoo verify`` and recommend-eval read those. ``musiczoo synth mtat``
writes the same three files for the clips it makes.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from .mtat_format import TOP50_TAGS
from .primitives.files import write_atomically
from .split_lists import LISTED_SPLITS, find_list, split_file_name

#: The sources as ``musiczoo download mtat`` stores them in ``<root>/splits/``.
LIST_SOURCES = {part: split_file_name("{split}_list_pub.cP", part) for part in LISTED_SPLITS}
TAGS_SOURCE = "top50_tags.txt"
INDEX_SOURCE = "index_mtt.tsv"
#: The derived split, one file per part.
SPLIT_FILE = "top50_{split}.tsv"
EXPECTED_COUNTS = {"train": 15244, "val": 1529, "test": 4332}
#: MTAT folders per part in the literature's split.
SPLIT_FOLDERS = {"train": "0123456789ab", "val": "c", "test": "def"}
#: Jongpil Lee's ``top50_tags.txt`` puts these two columns the other way round from :data:`TOP50_TAGS`.
JONGPIL_SWAPPED = (47, 48)


class SplitEntry(NamedTuple):
    """One clip as a split list names it: its ``clip_id`` and the ``mp3_path`` it is stored at
    (relative to the release root)."""

    clip_id: int
    mp3_path: str


def part_of(mp3_path: str) -> str:
    """The part (train, val or test) of the literature's split that a clip's folder belongs to."""
    folder = mp3_path.split("/", 1)[0]
    for part, folders in SPLIT_FOLDERS.items():
        if len(folder) == 1 and folder in folders:
            return part
    raise ValueError(f"{mp3_path!r} is not in an MTAT folder 0..f")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for data-only pickles: any class or function reference is refused, so a
    tampered file cannot run code (a plain list of str needs none)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickled_str_list(path: Path) -> list[str]:
    """A Python-2 pickled ``list`` of ``str``, loaded without allowing any code to run."""
    try:
        with open(path, "rb") as f:
            obj = _NoGlobalsUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a pickled list of paths ({e})") from None
    if not isinstance(obj, list) or not all(isinstance(s, str) for s in obj):
        raise ValueError(f"{path}: expected a list of str, got {type(obj).__name__}")
    return obj


def read_entries(path: Path) -> list[SplitEntry]:
    """A ``clip_id<TAB>mp3_path`` file (musicnn's ``index_mtt.tsv``, one row per row of
    ``annotations_final.csv``, or a derived ``top50_*.tsv``), in its order."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            clip_id, mp3_path = line.split("\t")
            entries.append(SplitEntry(int(clip_id), mp3_path))
        except ValueError:
            raise ValueError(f"{path}:{number}: expected clip_id<TAB>mp3_path, got {line[:80]!r}") from None
    return entries


def camel_to_spaced(name: str) -> str:
    """``femaleVoice`` -> ``female voice`` (Jongpil Lee's names -> ``annotations_final.csv``'s)."""
    return re.sub(r"([A-Z])", lambda m: " " + m.group(1).lower(), name)


def derive_top50_split(folder: Path) -> dict[str, int]:
    """Write ``top50_{train,valid,test}.tsv`` in ``folder`` from the sources there; returns the counts.

    Checks before writing anything: the sources' tags are :data:`TOP50_TAGS` (with Lee's two
    columns swapped), every listed path is in the index, and the parts have the literature's
    sizes, folders and no overlap.
    """
    index = read_entries(folder / INDEX_SOURCE)
    row_of = {entry.mp3_path: row for row, entry in enumerate(index)}
    if len(row_of) != len(index):
        raise ValueError(f"{folder / INDEX_SOURCE}: duplicate paths")
    tags = [camel_to_spaced(t) for t in (folder / TAGS_SOURCE).read_text(encoding="ascii").split()]
    a, b = JONGPIL_SWAPPED
    if len(tags) == len(TOP50_TAGS):
        tags[a], tags[b] = tags[b], tags[a]
    if tuple(tags) != TOP50_TAGS:
        raise ValueError(f"{folder / TAGS_SOURCE}: not the literature's 50 tags")
    rows: dict[str, list[int]] = {}
    for part, name in LIST_SOURCES.items():
        paths = [re.sub(r"\.npy$", ".mp3", p) for p in load_pickled_str_list(folder / name)]
        unknown = [p for p in paths if p not in row_of]
        if unknown:
            raise ValueError(f"{folder / name}: {len(unknown)} paths not in {INDEX_SOURCE}, e.g. {unknown[0]!r}")
        rows[part] = sorted({row_of[p] for p in paths})
        if len(rows[part]) != len(paths) or len(paths) != EXPECTED_COUNTS[part]:
            raise ValueError(f"{folder / name}: {len(paths)} paths ({len(rows[part])} distinct), "
                             f"expected {EXPECTED_COUNTS[part]}")
        if {part_of(index[r].mp3_path) for r in rows[part]} != {part}:
            raise ValueError(f"{folder / name}: clips outside the folders {SPLIT_FOLDERS[part]} of the {part} split")
    write_top50_split(folder, {part: [index[r] for r in rows[part]] for part in LISTED_SPLITS})
    return {part: len(rows[part]) for part in LISTED_SPLITS}


def write_top50_split(folder: Path, parts: dict[str, Iterable[SplitEntry]]) -> None:
    """The three ``top50_*.tsv`` files, written together (none appears half-written)."""
    def writer(entries: list[SplitEntry]):
        return lambda path: path.write_text("".join(f"{c}\t{p}\n" for c, p in entries), encoding="utf-8")

    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder, {split_file_name(SPLIT_FILE, part): writer(list(parts[part])) for part in LISTED_SPLITS})


def load_top50_split(root: str | os.PathLike, part: str) -> list[SplitEntry]:
    """One part (train, val or test) of the top-50 split of the release at ``root``:
    ``[(clip_id, mp3_path), ...]`` from ``<root>/splits/top50_<part>.tsv``."""
    if part not in LISTED_SPLITS:
        raise ValueError(f"unknown MTAT split {part!r}, expected one of {LISTED_SPLITS}")
    return read_entries(find_list([root], split_file_name(SPLIT_FILE, part), "MagnaTagATune top-50 split", "mtat"))

