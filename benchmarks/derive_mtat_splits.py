"""Derive the MagnaTagATune top-50 split shipped in ``datamodules/splits/``.

This was run once; its output is committed as plain-text package data, so nothing at run
time needs pickles, NumPy string arrays or the source repositories. The script stays in the
repository to document exactly how the files were made and to re-check them::

    python benchmarks/derive_mtat_splits.py /path/to/shared/data          # (re)write
    python benchmarks/derive_mtat_splits.py /path/to/shared/data --check  # compare only

Inputs (under ``<data>/mtat``, see datamodules/splits/README_mtat.md for provenance):

* ``jongpil/train_list_pub.cP``: Python-2 pickle of the 15,244 train paths, ``.npy`` instead
  of ``.mp3``. It is read with an unpickler that refuses every global, so a tampered file
  cannot execute code; a plain list of str needs none.
* ``valid.npy`` / ``test.npy`` (minzwon): ``"<idx>\\t<mp3 path>"`` per clip.
* ``musicnn/index_mtt.tsv``: ``<clip_id>\\t<mp3 path>`` for all 25,863 clips in
  ``annotations_final.csv`` order, so line number == minzwon ``idx``.
* ``tags.npy`` (minzwon): the 50 tag names in label-column order.

Outputs: ``mtat_top50_tags.txt`` and ``mtat_top50_{train,valid,test}.tsv`` (``clip_id<TAB>mp3_path``
sorted by clip index, one ``#`` header line).
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from pathlib import Path

import numpy as np

EXPECTED_COUNTS = {"train": 15244, "valid": 1529, "test": 4332}
# MTAT folders per split in the literature's split (Lee et al.; Won et al.).
EXPECTED_FOLDERS = {"train": set("0123456789ab"), "valid": {"c"}, "test": set("def")}
# jongpil's y_*.npy / top50_tags.txt put these two at 47/48, swapped relative to tags.npy.
JONGPIL_SWAPPED = (47, 48)

SOURCES = {
    "train": "jongpillee/music_dataset_split MTAT_split/train_list_pub.cP",
    "valid": "minzwon/sota-music-tagging-models split/mtat/valid.npy",
    "test": "minzwon/sota-music-tagging-models split/mtat/test.npy",
}
INDEX_SOURCE = "jordipons/musicnn-training data/index/mtt/index_mtt.tsv"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "datamodules" / "splits"


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for data-only pickles: any class or function reference is refused."""

    def find_class(self, module, name):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickled_str_list(path: Path) -> list[str]:
    """Load a Python-2 pickled ``list`` of ``str`` without allowing any code to run."""
    with open(path, "rb") as f:
        obj = _NoGlobalsUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, list) or not all(isinstance(s, str) for s in obj):
        raise ValueError(f"{path}: expected a list of str, got {type(obj).__name__}")
    return obj


def read_index(path: Path) -> list[tuple[int, str]]:
    """``index_mtt.tsv`` as a list indexed by minzwon idx (== annotations_final.csv row)."""
    rows = []
    for line in path.read_text(encoding="ascii").splitlines():
        clip_id, mp3 = line.split("\t")
        rows.append((int(clip_id), mp3))
    return rows


def camel_to_spaced(name: str) -> str:
    """``femaleVoice`` -> ``female voice`` (jongpil's names -> annotations_final.csv names)."""
    return re.sub(r"([A-Z])", lambda m: " " + m.group(1).lower(), name)


def derive(data: Path) -> dict[str, str]:
    """Return ``{file name: text}`` for every derived file, after checking all invariants."""
    mtat = data / "mtat"
    index = read_index(mtat / "musicnn" / "index_mtt.tsv")
    idx_of_path = {p: i for i, (_, p) in enumerate(index)}
    if len(idx_of_path) != len(index):
        raise ValueError("index_mtt.tsv has duplicate paths")

    tags = [str(t) for t in np.load(mtat / "tags.npy")]
    jongpil = [camel_to_spaced(t) for t in (mtat / "jongpil" / "top50_tags.txt").read_text().split()]
    a, b = JONGPIL_SWAPPED
    jongpil[a], jongpil[b] = jongpil[b], jongpil[a]
    if tags != jongpil or len(set(tags)) != 50:
        raise ValueError("tags.npy is not jongpil's top-50 list with columns 47/48 swapped")

    idx: dict[str, list[int]] = {}
    train_paths = load_pickled_str_list(mtat / "jongpil" / "train_list_pub.cP")
    idx["train"] = [idx_of_path[re.sub(r"\.npy$", ".mp3", p)] for p in train_paths]
    for name in ("valid", "test"):
        entries = [str(e).split("\t") for e in np.load(mtat / f"{name}.npy")]
        idx[name] = [int(i) for i, _ in entries]
        for i, p in entries:  # minzwon's idx must point at the same clip in the index
            if index[int(i)][1] != p:
                raise ValueError(f"{name}.npy idx {i} is {p!r} but index_mtt.tsv has {index[int(i)][1]!r}")
        jp = {re.sub(r"\.npy$", ".mp3", p) for p in load_pickled_str_list(mtat / "jongpil" / f"{name}_list_pub.cP")}
        if jp != {p for _, p in entries}:
            raise ValueError(f"minzwon {name}.npy and jongpil {name}_list_pub.cP differ")

    for name, want in EXPECTED_COUNTS.items():
        got = sorted(set(idx[name]))
        if len(got) != want or len(idx[name]) != want:
            raise ValueError(f"{name}: {len(idx[name])} entries ({len(got)} unique), expected {want}")
        idx[name] = got
        folders = {index[i][1].split("/")[0] for i in got}
        if not folders <= EXPECTED_FOLDERS[name]:
            raise ValueError(f"{name}: unexpected folders {sorted(folders - EXPECTED_FOLDERS[name])}")
    for x, y in (("train", "valid"), ("train", "test"), ("valid", "test")):
        if set(idx[x]) & set(idx[y]):
            raise ValueError(f"{x} and {y} overlap")

    out = {"mtat_top50_tags.txt": "".join(t + "\n" for t in tags)}
    for name in EXPECTED_COUNTS:
        header = (
            f"# MagnaTagATune top-50 {name} split ({EXPECTED_COUNTS[name]} clips): clip_id<TAB>mp3_path, "
            f"sorted by annotations_final.csv row. Clip set from {SOURCES[name]}; "
            f"clip_id from {INDEX_SOURCE}. Made by benchmarks/derive_mtat_splits.py.\n"
        )
        out[f"mtat_top50_{name}.tsv"] = header + "".join(f"{index[i][0]}\t{index[i][1]}\n" for i in idx[name])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="shared data folder holding mtat/")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: package splits)")
    ap.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = ap.parse_args(argv)

    files = derive(args.data)
    stale = [n for n, text in files.items() if not (args.out / n).is_file() or (args.out / n).read_text() != text]
    if args.check:
        print("up to date" if not stale else f"differs: {', '.join(stale)}")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="ascii")
    print(f"wrote {len(files)} files to {args.out} ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
