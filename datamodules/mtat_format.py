"""MagnaTagATune on-disk formats: ``annotations_final.csv`` and the top-50 tags.

Kept free of torch and of the DataModule so that reading labels, checking a download and
writing synthetic releases (``synthetic_mtat.py``) share one definition of the format.

``annotations_final.csv`` (MTAT release) is TAB-separated despite its name; every value is in
double quotes; the header is ``"clip_id"``, the 188 tag names, ``"mp3_path"``; tag values are
``"0"``/``"1"``. Tag names are lowercase with spaces (``"female voice"``, ``"no vocals"``).
Columns are looked up by name, never by position, so a file with another column order (or
the stand-in header of the synthetic releases) gives the same top-50 matrix.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

ANNOTATIONS_FILE = "annotations_final.csv"

# The 188 tag columns of annotations_final.csv, in the release's order. Near-synonyms
# ("no voice"/"no voices"/"no vocal"/"no vocals", "harpsichord"/"harpsicord") are separate
# columns on the real release: the crowd-sourced labels were never merged.
MTAT_TAGS: tuple[str, ...] = (
    "no voice", "singer", "duet", "plucking", "hard rock", "world", "bongos", "harpsichord",
    "female singing", "clasical", "sitar", "chorus", "female opera", "male vocal", "vocals",
    "clarinet", "heavy", "silence", "beats", "men", "woodwind", "funky", "no strings", "chimes",
    "foreign", "no piano", "horns", "classical", "female", "no voices", "soft rock", "eerie",
    "spacey", "jazz", "guitar", "quiet", "no beat", "banjo", "electric", "solo", "violins", "folk",
    "female voice", "wind", "happy", "ambient", "new age", "synth", "funk", "no singing",
    "middle eastern", "trumpet", "percussion", "drum", "airy", "voice", "repetitive", "birds",
    "space", "strings", "bass", "harpsicord", "medieval", "male voice", "girl", "keyboard",
    "acoustic", "loud", "classic", "string", "drums", "electronic", "not classical", "chanting",
    "no violin", "not rock", "no guitar", "organ", "no vocal", "talking", "choral", "weird",
    "opera", "soprano", "fast", "acoustic guitar", "electric guitar", "male singer", "man singing",
    "classical guitar", "country", "violin", "electro", "reggae", "tribal", "dark", "male opera",
    "no vocals", "irish", "electronica", "horn", "operatic", "arabic", "lol", "low", "instrumental",
    "trance", "chant", "strange", "drone", "synthesizer", "heavy metal", "modern", "disco", "bells",
    "man", "deep", "fast beat", "industrial", "hard", "harp", "no flute", "jungle", "pop", "lute",
    "female vocal", "oboe", "mellow", "orchestral", "viola", "light", "echo", "piano", "celtic",
    "male vocals", "orchestra", "eastern", "old", "flutes", "punk", "spanish", "sad", "sax", "slow",
    "male", "blues", "vocal", "indian", "no singer", "scary", "india", "woman", "woman singing",
    "rock", "dance", "piano solo", "guitars", "no drums", "jazzy", "singing", "cello", "calm",
    "female vocals", "voices", "different", "techno", "clapping", "house", "monks", "flute",
    "not opera", "not english", "oriental", "beat", "upbeat", "soft", "noise", "choir",
    "female singer", "rap", "metal", "hip hop", "quick", "water", "baroque", "women", "fiddle",
    "english",
)


#: The 50 tags of the literature's benchmark, in label-column order: minzwon's ``tags.npy`` and
#: musicnn's ``MTT_LABELS``, where ``metal`` is column 47 and ``female voice`` 48. Jongpil Lee's
#: ``top50_tags.txt`` and ``y_*.npy`` have those two swapped (see :mod:`datamodules.mtat_split`).
TOP50_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)


def top50_tags() -> list[str]:
    """The 50 tags of the literature's benchmark, in label-column order (:data:`TOP50_TAGS`)."""
    return list(TOP50_TAGS)


def read_annotations(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Read ``annotations_final.csv``.

    Returns ``(clip_ids int64 (N,), tag_names, labels uint8 (N, T), mp3_paths)``, rows in file
    order, ``tag_names`` in column order. Raises ``ValueError`` naming ``file:line`` for a row
    with the wrong number of columns, a non-integer or repeated clip_id, an empty mp3_path or a
    tag value other than 0/1, and for a header without ``clip_id``/``mp3_path`` columns. A
    malformed file is an error rather than a skip: one bad row means the labels of the whole
    file cannot be trusted. Blank lines are ignored.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quotechar='"', strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}:1: empty file, expected a header row")
            missing = [c for c in ("clip_id", "mp3_path") if c not in header]
            if missing:
                raise ValueError(
                    f"{path}:1: header has no {' or '.join(map(repr, missing))} column "
                    f"(is this MagnaTagATune's tab-separated annotations_final.csv?)"
                )
            id_col, path_col = header.index("clip_id"), header.index("mp3_path")
            tag_cols = [i for i in range(len(header)) if i not in (id_col, path_col)]
            tag_names = [header[i] for i in tag_cols]
            dupes = sorted({t for t in tag_names if tag_names.count(t) > 1})
            if dupes:
                raise ValueError(f"{path}:1: duplicate column names {dupes}")

            clip_ids: list[int] = []
            mp3_paths: list[str] = []
            rows: list[bytes] = []
            seen: dict[int, int] = {}
            for row in reader:
                line = reader.line_num
                if not row or row == [""]:
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
                try:
                    clip_id = int(row[id_col])
                except ValueError:
                    raise ValueError(f"{path}:{line}: clip_id {row[id_col]!r} is not an integer") from None
                if clip_id in seen:
                    raise ValueError(f"{path}:{line}: clip_id {clip_id} already on line {seen[clip_id]}")
                if not row[path_col]:
                    raise ValueError(f"{path}:{line}: empty mp3_path")
                values = [row[i] for i in tag_cols]
                if not set(values) <= {"0", "1"}:
                    k = next(k for k, v in enumerate(values) if v not in ("0", "1"))
                    raise ValueError(f"{path}:{line}: tag {tag_names[k]!r} has value {values[k]!r}, expected 0 or 1")
                seen[clip_id] = line
                clip_ids.append(clip_id)
                mp3_paths.append(row[path_col])
                rows.append("".join(values).encode("ascii"))
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: {e}") from None

    labels = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), len(tag_cols)) - ord("0")
    return np.asarray(clip_ids, dtype=np.int64), tag_names, labels, mp3_paths


def top50_label_matrix(tag_names: list[str], labels: np.ndarray) -> np.ndarray:
    """Select the top-50 columns of a 188-tag label matrix, in ``top50_tags()`` order.

    Columns are matched by name, so the source column order does not matter. Returns float32
    ``(N, 50)``, ready for BCE. Raises ``KeyError`` listing any top-50 tag missing from
    ``tag_names``, instead of silently producing an all-zero column.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(tag_names):
        raise ValueError(f"labels shape {labels.shape} does not match {len(tag_names)} tag names")
    col = {t: i for i, t in enumerate(tag_names)}
    missing = [t for t in TOP50_TAGS if t not in col]
    if missing:
        raise KeyError(f"top-50 tags missing from the annotations: {missing}")
    return labels[:, [col[t] for t in TOP50_TAGS]].astype(np.float32)
