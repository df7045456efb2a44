"""The split lists shipped as package data in ``datamodules/splits/``, and the one place where
their word for a split meets ours.

The GTZAN lists (Kereliuk, Sturm & Larsen, copied byte for byte) and the MTAT top-50 split
(minzwon's, see ``splits/README_mtat.md``) call the validation split "valid", and the shipped
files keep their sources' names (``gtzan_valid_filtered.txt``, ``mtat_top50_valid.tsv``). In
code the split is "val", as in every data module and loader; :func:`split_file_name` is the
only translation between the two words.
"""

from __future__ import annotations

from importlib import resources

#: The splits every shipped list comes in, by the names the code uses.
LISTED_SPLITS = ("train", "val", "test")
#: Our name of a split -> the word the shipped files (and their sources) use for it.
_FILE_WORD = {"train": "train", "val": "valid", "test": "test"}


def split_file_name(pattern: str, split: str) -> str:
    """``pattern`` with ``{split}`` replaced by the files' word for ``split`` (one of
    :data:`LISTED_SPLITS`): ``split_file_name("mtat_top50_{split}.tsv", "val")`` is
    ``"mtat_top50_valid.tsv"``."""
    if split not in _FILE_WORD:
        raise ValueError(f"unknown split {split!r}, expected one of {LISTED_SPLITS}")
    return pattern.format(split=_FILE_WORD[split])


def shipped_file(name: str) -> resources.abc.Traversable:
    """The package data file ``datamodules/splits/<name>`` (read it with ``read_text`` or ``resources.as_file``)."""
    return resources.files("datamodules").joinpath("splits", name)
