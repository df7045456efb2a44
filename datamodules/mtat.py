"""MagnaTagATune top-50 auto-tagging (Law et al., ISMIR 2009), read from the real release.

``root`` holds the release as distributed: mp3 files in folders ``0``..``f`` and
``annotations_final.csv``. Labels are the 50 most frequent tags in the literature's column
order (:func:`~datamodules.mtat_format.top50_tags`), the split is the literature's top-50
split (15,244 / 1,529 / 4,332 clips) read from ``root/splits/`` (:mod:`datamodules.mtat_split`),
and evaluation is clip-level
macro ROC-AUC / PR-AUC over evenly spaced chunks (done by the base data module and the task).
"""

from __future__ import annotations

import logging

from .base import AudioDataModule
from .items import Item
from .mtat_format import (
    ANNOTATIONS_FILE,
    read_annotations,
    top50_label_matrix,
    top50_tags,
)
from .mtat_split import load_top50_split
from .split_lists import LISTED_SPLITS

log = logging.getLogger(__name__)


def _listing(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


class MTATDataModule(AudioDataModule):
    """MagnaTagATune top-50 tagging: 50 labels, ``task = "multilabel"``, clip keys = mp3 paths.

    Targets come from ``annotations_final.csv``, matched to the split by ``clip_id``; the
    annotation row's ``mp3_path`` must equal the split's path (a different path means the
    annotations belong to another release, so every label would be suspect). Split clips
    that the annotations do not list are left out with a warning: the real release lists
    all of them, a synthetic or partial release only some.

    Files the split and annotations name but that are absent from disk are an error listing
    them (an incomplete download should not train silently on a subset). Files present but
    empty or truncated (the release ships a few) are skipped by the decode cache with a
    warning naming each and a count.

    The cache is built by :class:`~datamodules.cache.AudioCache`: decoded once with
    ``decode_workers`` processes, then reused while no file changes. An interrupted build
    leaves nothing that looks complete; the next run restarts the build from scratch (it
    does not resume).

    The sample rate defaults to MTAT's own 16 kHz. The literature's crop is 59,049 samples
    (3^10, 3.69 s at 16 kHz; Lee et al. 2017, Won et al. 2020): the shipped MTAT configs set
    ``chunk_seconds: 3.6905625``. The other arguments are :class:`~datamodules.base.AudioDataModule`'s.
    """

    task = "multilabel"
    dataset_name = "mtat"
    split_name = "top50"

    def __init__(self, root: str, sample_rate: int = 16000, **kwargs):
        super().__init__(root, sample_rate=sample_rate, **kwargs)
        self.label_names = top50_tags()

    def split_items(self) -> dict[str, list[Item]]:
        annotations = self.root / ANNOTATIONS_FILE
        if not annotations.is_file():
            raise FileNotFoundError(
                f"no {ANNOTATIONS_FILE} in {self.root}: root must be the MagnaTagATune release "
                f"(mp3 folders 0..f and {ANNOTATIONS_FILE})")
        clip_ids, tag_names, labels, paths = read_annotations(annotations)
        targets = top50_label_matrix(tag_names, labels).astype(int).tolist()
        row_of = {int(c): i for i, c in enumerate(clip_ids)}

        splits: dict[str, list[Item]] = {}
        unlisted, missing, total = 0, [], 0
        for name in LISTED_SPLITS:
            items = []
            for clip_id, mp3 in load_top50_split(self.root, name):
                total += 1
                row = row_of.get(clip_id)
                if row is None:
                    unlisted += 1
                    continue
                if paths[row] != mp3:
                    raise ValueError(
                        f"{annotations}: clip_id {clip_id} has mp3_path {paths[row]!r}, but the top-50 "
                        f"{name} split names {mp3!r}; these annotations do not belong to this release")
                path = self.root / mp3
                if not path.is_file():
                    missing.append(mp3)
                items.append(Item(mp3, str(path), targets[row]))
            splits[name] = items
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} mp3 files of the MTAT top-50 split are missing under {self.root}: "
                f"{_listing(missing)}")
        if unlisted == total:
            raise ValueError(f"{annotations} lists none of the clips of the MTAT top-50 split")
        if unlisted:
            log.warning("%s lists %d of the %d clips of the MTAT top-50 split; using those "
                        "(expected for a synthetic or partial release)", annotations, total - unlisted, total)
        return splits
