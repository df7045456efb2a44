"""GTZAN (Tzanetakis & Cook 2002): 1000 clips x 30 s, 10 genres, in either of its two layouts.

Splits: ``fault_filtered`` (default, the artist-filtered 443/197/290 split of Kereliuk, Sturm &
Larsen 2015 without Sturm's faulty files), ``stratified`` (the 500/250/250 random lists from the
same source), ``artist`` (artist-disjoint parts near 60/20/20 computed from Sturm's artist index
over the files on disk, for any subset of GTZAN: :func:`artist_split`) and ``kfold`` (seeded
stratified folds over the files on disk). Random and k-fold results are inflated by artist
overlap and repeated clips; report them labelled as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from .folder import FolderDataModule, read_split_list, stratified_folds
from .items import Item
from .split_lists import LISTED_SPLITS, find_list, split_file_name

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SPLITS = ("fault_filtered", "stratified")
#: Sturm's artist/title index, fetched with the dataset into ``<root>/splits/``.
ARTIST_INDEX = "GTZANindex.txt"
_CLIP_NAME = re.compile(r"^([a-z]+)\.\d{5}\.(wav|au)$")


def _fault_filtered(part: str) -> list[str]:
    """The Kereliuk-Sturm lists as torchaudio ships them (``blues.00029``), as list entries."""
    from torchaudio.datasets import gtzan

    names = {"train": gtzan.filtered_train, "val": gtzan.filtered_valid, "test": gtzan.filtered_test}[part]
    return [f"{name.split('.')[0]}/{name}.wav" for name in names]


def split_list(split: str, part: str, roots: Iterable[str | Path] = ()) -> list[str]:
    """Entries (``<genre>/<genre>.000NN.wav``) of one part (train, val or test) of a split.

    ``fault_filtered`` comes from the installed torchaudio; ``stratified`` is read from
    ``<root>/splits/{train,valid,test}_stratified.txt`` for the first of ``roots`` that has it
    (fetched by ``musiczoo download gtzan``, written by ``musiczoo synth gtzan``).
    """
    if part not in LISTED_SPLITS:
        raise ValueError(f"unknown split part {part!r}, expected one of {LISTED_SPLITS}")
    if split == "fault_filtered":
        return _fault_filtered(part)
    if split != "stratified":
        raise ValueError(f"GTZAN has no listed split {split!r}; listed: {', '.join(SPLITS)}")
    return read_split_list(find_list(roots, split_file_name("{split}_stratified.txt", part),
                                     "GTZAN stratified split", "gtzan"))


def artists(roots: Iterable[str | Path]) -> dict[str, str]:
    """Sturm's artist index (``<root>/splits/GTZANindex.txt``): ``"blues.00000.wav"`` -> ``"John Lee Hooker"``.

    Entries with an unknown artist map to ``""``.
    """
    lines = find_list(roots, ARTIST_INDEX, "GTZAN's artist index", "gtzan").read_text(encoding="latin-1").splitlines()
    index = {}
    for line in lines:
        if line.startswith("##") or ":::" not in line:
            continue
        name, artist, *_ = (part.strip() for part in line.split(":::"))
        index[name] = artist
    return index


#: The shares of train, validation and test that :func:`artist_split` aims at.
ARTIST_SPLIT_SHARES = {"train": 0.6, "val": 0.2, "test": 0.2}


def artist_split(entries: Iterable[str], artist_of: dict[str, str]) -> dict[str, list[str]]:
    """Train/val/test parts of ``entries`` (``<genre>/<genre>.000NN.wav``) in which no artist is
    in two parts, every genre is in every part, and each genre is split near
    :data:`ARTIST_SPLIT_SHARES`: what a figure on GTZAN must use, since adjacent clips often
    share an artist (a random split puts the same artist, often the same album, on both sides).

    ``artist_of`` is :func:`artists` (Sturm's index). Clips whose artist is empty or not in
    the index are grouped per genre, so that they cannot leak either. Deterministic: the same
    entries give the same parts, whatever the seed of the models trained on them.

    Each artist's clips move together: the largest groups are placed first, each in the part
    whose per-genre counts it brings closest to the shares (least squares); then a part that
    lacks a genre takes that genre's smallest group from the part holding most of it, where
    that leaves the other part its genres. ValueError when a genre has too few artists to be
    in all three parts.
    """
    groups: dict[str, list[str]] = {}
    for entry in sorted(set(entries)):
        genre, name = entry.split("/")[0], Path(entry).with_suffix(".wav").name
        artist = " ".join(artist_of.get(name, "").split()).casefold()
        groups.setdefault(artist or f"(no artist: {genre})", []).append(entry)
    genres = sorted({entry.split("/")[0] for members in groups.values() for entry in members})
    column = {genre: i for i, genre in enumerate(genres)}
    counts = {key: np.bincount([column[e.split("/")[0]] for e in members], minlength=len(genres))
              for key, members in groups.items()}
    total = sum(counts.values())
    target = {part: share * total for part, share in ARTIST_SPLIT_SHARES.items()}
    held = {part: np.zeros(len(genres)) for part in ARTIST_SPLIT_SHARES}
    place: dict[str, str] = {}
    for key in sorted(groups, key=lambda k: (-len(groups[k]), k)):
        part = min(held, key=lambda p: float(((held[p] + counts[key] - target[p]) ** 2).sum()
                                             - ((held[p] - target[p]) ** 2).sum()))
        place[key], held[part] = part, held[part] + counts[key]
    for part in held:
        for g, genre in enumerate(genres):
            if held[part][g]:
                continue
            donor = max((p for p in held if p != part), key=lambda p: held[p][g])
            movable = [k for k in groups if place[k] == donor and counts[k][g]
                       and ((held[donor] - counts[k]) > 0)[held[donor] > 0].all()]
            if not movable:
                raise ValueError(f"GTZAN artist split: {genre} has too few artists among these files to be "
                                 f"in train, validation and test without one artist in two of them")
            key = min(movable, key=lambda k: (counts[k].sum(), k))
            place[key], held[donor], held[part] = part, held[donor] - counts[key], held[part] + counts[key]
    return {part: sorted(e for key, members in groups.items() if place[key] == part for e in members)
            for part in ARTIST_SPLIT_SHARES}


def find_gtzan(root: str | Path) -> tuple[Path, str]:
    """The folder holding the 10 genre folders, and the clips' extension (``.wav`` or ``.au``).

    Accepts ``root/genres_original`` (re-release, wav), ``root/genres`` (original tarball, au)
    or ``root`` itself being that folder; the extension is read off the files present.
    """
    root = Path(root).expanduser()
    for candidate in (root / "genres_original", root / "genres", root):
        if not all((candidate / g).is_dir() for g in GENRES):
            continue
        suffixes = [m.group(2) for g in GENRES for p in (candidate / g).iterdir()
                    if (m := _CLIP_NAME.match(p.name)) and m.group(1) == g]
        if suffixes:
            return candidate, "." + max(set(suffixes), key=suffixes.count)
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()) if root.is_dir() else None
    raise FileNotFoundError(
        f"no GTZAN data under {root}: expected genres_original/<genre>/<genre>.000NN.wav "
        f"(re-release), genres/<genre>/<genre>.000NN.au (original tarball) or the 10 genre "
        f"folders ({', '.join(GENRES)}) directly in it; found "
        + ("nothing (no such folder)" if found is None else
           f"{len(found)} entries: {', '.join(found[:12])}{', ...' if len(found) > 12 else ''}"))


class GTZANDataModule(FolderDataModule):
    """GTZAN genre classification, 10 classes in alphabetical order.

    Args:
        root: folder containing ``genres_original/`` or ``genres/``, or one of those itself.
        split: ``fault_filtered`` (default, the standard), ``stratified``, ``artist`` (computed
            over the files present from ``<root>/splits/GTZANindex.txt``, which ``musiczoo
            download gtzan --lists-only --root ROOT`` fetches) or ``kfold``.
        k, fold: for ``kfold``: test = fold ``fold``, validation = fold ``(fold + 1) % k``,
            training = the other k - 2 folds; folds are drawn with ``seed``.

    Files named by a split list but absent from disk are an error; files present but
    undecodable (the re-release's empty ``jazz.00054.wav``) are skipped with a warning.
    Clip keys are the paths relative to the genre folders' parent, e.g. ``jazz/jazz.00054.wav``.
    The other arguments are :class:`~datamodules.base.AudioDataModule`'s.
    """

    dataset_name = "gtzan"

    def __init__(
        self,
        root: str,
        split: Literal["fault_filtered", "stratified", "artist", "kfold"] = "fault_filtered",
        k: int = 10,
        fold: int = 0,
        **kwargs,
    ):
        super().__init__(root, labels=list(GENRES), **kwargs)
        if split not in (*SPLITS, "artist", "kfold"):
            raise ValueError(f"split must be one of {(*SPLITS, 'artist', 'kfold')}, got {split!r}")
        if split == "kfold" and not (k >= 3 and 0 <= fold < k):
            raise ValueError(f"kfold needs k >= 3 and 0 <= fold < k, got k={k}, fold={fold}")
        self.split, self.k, self.fold = split, int(k), int(fold)
        self._found: tuple[Path, str] | None = None

    @property
    def layout(self) -> tuple[Path, str]:
        """(genre folders' parent, clip extension), found on first use rather than in
        ``__init__``, so a config may name a dataset that is not downloaded yet."""
        if self._found is None:
            self._found = find_gtzan(self.root)
        return self._found

    @property
    def data_dir(self) -> Path:
        return self.layout[0]

    @property
    def split_name(self) -> str:
        return f"kfold(k={self.k},fold={self.fold},seed={self.seed})" if self.split == "kfold" else self.split

    def locate(self, entry: str) -> str:
        """The lists name ``.wav`` files; the original tarball has ``.au``."""
        return Path(entry).with_suffix(self.layout[1]).as_posix()

    def split_items(self) -> dict[str, list[Item]]:
        if self.split == "kfold":
            items = self.scan()
            folds = stratified_folds(np.array([it.target for it in items]), self.k, self.seed)
            val_fold = (self.fold + 1) % self.k
            return {
                "train": [it for it, f in zip(items, folds) if f not in (self.fold, val_fold)],
                "val": [it for it, f in zip(items, folds) if f == val_fold],
                "test": [it for it, f in zip(items, folds) if f == self.fold],
            }
        roots = (self.root, self.data_dir.parent)
        if self.split == "artist":
            items = {it.key: it for it in self.scan()}
            parts = artist_split(items, artists(roots))
            return {name: [items[key] for key in parts[name]] for name in LISTED_SPLITS}
        return {name: self.items_from_list(split_list(self.split, name, roots), f"the GTZAN {self.split} {name} list")
                for name in LISTED_SPLITS}
