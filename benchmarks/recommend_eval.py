"""Recommend-eval: how good a library's recommendations are, against baselines.

A benchmark of the recommender, run by ``musiczoo recommend-eval`` (``zoo/cli/bench.py``, the
only part of ``zoo`` that imports ``benchmarks``): it reads the data modules' split lists and
Sturm's artist index, which the library itself never needs.

The ground truth comes from the dataset layout the library was indexed from:

* GTZAN (``<genre>/<genre>.000NN.<ext>`` anywhere below the music folder): a neighbour is
  relevant when it has the query's genre; precision@k and mAP@k. Only the tracks of one
  fault-filtered split are evaluated (``test`` by default: the genre models never trained
  on them), and a query's neighbours come from other artists' tracks only (Sturm's artist
  index, fetched with the dataset into ``splits/``), otherwise the figure measures artist
  identity (Flexer & Schnitzer 2010). Synthetic GTZAN has no artists.
* MagnaTagATune (``annotations_final.csv`` in the music folder): graded relevance by the
  top-50 tags; mean tag Jaccard@k and nDCG@k over the top-50 split's test clips.

Each library is scored with each feature choice (embedding, probabilities, combined), and
two baselines are scored on the same tracks: random neighbours, and per-track MFCC mean and
standard deviation vectors (z-scored over the collection), the hand-crafted representation
of early music similarity work.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmarks.mfcc_baseline import mfcc_features
from datamodules.gtzan import GENRES, artist_split, artists, split_list
from datamodules.mtat_format import (
    ANNOTATIONS_FILE,
    read_annotations,
    top50_label_matrix,
)
from datamodules.mtat_split import load_top50_split
from datamodules.split_lists import LISTED_SPLITS, MissingListError
from datamodules.synthetic_marker import is_synthetic
from zoo.recommend import evaluate
from zoo.recommend.library import Library, LibraryError

_GTZAN_NAME = re.compile(r"(?:^|/)([a-z]+)/(\1\.\d{5})\.[a-z0-9]+$")


def gtzan_ground_truth(library: Library, split: str = "test",
                       gtzan_split: str = "fault_filtered") -> tuple[list[int], np.ndarray, np.ndarray, str]:
    """(library rows, genre index per row, artist per row, data label) for one part of a GTZAN split:
    ``fault_filtered`` (the Kereliuk-Sturm lists) or ``artist`` (:func:`datamodules.gtzan.artist_split`
    of the library's GTZAN tracks, so the part a model was tested on when the library holds the
    same files as its data folder: a subset such as the GTZAN excerpts)."""
    if split not in LISTED_SPLITS:
        raise LibraryError(f"unknown GTZAN split {split!r}; valid: {', '.join(LISTED_SPLITS)}")
    if gtzan_split not in ("fault_filtered", "artist"):
        raise LibraryError(f"unknown GTZAN split {gtzan_split!r}; valid: fault_filtered, artist")
    artist_of = {} if is_synthetic(library.music_dir) else _artists(library.music_dir)
    named = [(row, match) for row, track in enumerate(library.tracks)
             if (match := _GTZAN_NAME.search(track.id)) and match.group(1) in GENRES]
    if gtzan_split == "artist":
        try:
            parts = artist_split([f"{m.group(1)}/{m.group(2)}.wav" for _, m in named], artist_of)
        except ValueError as e:
            raise LibraryError(f"{library.root}: {e}") from None
        wanted = {Path(entry).stem for entry in parts[split]}
    else:
        wanted = {Path(entry).stem for entry in split_list("fault_filtered", split)}
    rows, genres, names = [], [], []
    for row, match in named:
        if match.group(2) in wanted:
            rows.append(row)
            genres.append(GENRES.index(match.group(1)))
            # Tracks without a known artist are each their own artist.
            names.append(artist_of.get(f"{match.group(2)}.wav") or f"unknown:{match.group(2)}")
    what = "fault-filtered" if gtzan_split == "fault_filtered" else "artist-disjoint"
    if not rows:
        raise LibraryError(f"{library.root}: no track of the GTZAN {what} {split} split "
                           f"(<genre>/<genre>.000NN.wav) in the library of {library.music_dir}")
    return rows, np.array(genres), np.array(names, dtype=object), f"GTZAN {what} {split} split ({len(rows)} tracks)"


def _artists(music_dir: Path) -> dict[str, str]:
    """Sturm's index from ``splits/`` beside the music folder (or one or two folders up)."""
    try:
        return artists([music_dir, *music_dir.parents][:3])
    except MissingListError as e:
        raise LibraryError(f"{e}; the GTZAN ground truth excludes same-artist neighbours") from None


def mtat_ground_truth(library: Library, split: str = "test") -> tuple[list[int], np.ndarray, None, str]:
    """(library rows, top-50 tag matrix per row, no artists, data label) for the top-50 split."""
    annotations = library.music_dir / ANNOTATIONS_FILE
    if not annotations.is_file():
        raise LibraryError(f"no {ANNOTATIONS_FILE} in {library.music_dir}: the MTAT ground truth needs the release's annotations")
    _, tag_names, labels, paths = read_annotations(annotations)
    tags = dict(zip(paths, top50_label_matrix(tag_names, labels)))
    try:
        wanted = {path for _, path in load_top50_split(library.music_dir, split)}
    except MissingListError as e:
        raise LibraryError(str(e)) from None
    rows = [row for row, t in enumerate(library.tracks) if t.id in wanted and t.id in tags]
    if not rows:
        raise LibraryError(f"{library.root}: no track of the MTAT top-50 {split} split in the library")
    return rows, np.stack([tags[library.tracks[r].id] for r in rows]), None, f"MTAT top-50 {split} split ({len(rows)} clips)"


def mfcc_baseline(paths: list[Path], progress: bool = True) -> np.ndarray:
    """Per-track MFCC mean and standard deviation over time, z-scored over the collection."""
    features, bad = mfcc_features(paths, progress)
    if bad:  # the library was indexed from these files: one that no longer decodes is named
        raise LibraryError(next(iter(bad.values())))
    return evaluate.standardize(features)


def _score(ids: np.ndarray, truth: np.ndarray, dataset: str, k: int, groups) -> dict:
    if dataset == "gtzan":
        return evaluate.genre_metrics(ids, truth, k, exclude_same=groups)
    return evaluate.tag_metrics(ids, truth, k, exclude_same=groups)


def evaluate_libraries(paths: list[str | Path], dataset: str, *, split: str = "test", k: int = 10, seed: int = 0,
                       baselines: bool = True, progress: bool = True, gtzan_split: str = "fault_filtered",
                       label: str | None = None) -> list[dict]:
    """One result row per (library, feature choice), then one per baseline, on the same tracks.
    ``gtzan_split``: which GTZAN split ``split`` is a part of; ``label`` names the data in the
    tables instead of the split alone (a subset says which, e.g. the GTZAN excerpts)."""
    if dataset not in ("gtzan", "mtat"):
        raise LibraryError(f"unknown dataset {dataset!r}; valid: gtzan, mtat")
    results, reference = [], None
    for path in paths:
        library = Library.open(path)
        rows, truth, groups, data = (gtzan_ground_truth(library, split, gtzan_split) if dataset == "gtzan"
                                     else mtat_ground_truth(library, split))
        data = f"{label} ({len(rows)} tracks)" if label else data
        if reference is None:
            reference = (library, rows, truth, groups, data)
        elif [library.tracks[r].id for r in rows] != [reference[0].tracks[r].id for r in reference[1]]:
            raise LibraryError(f"{path} and {paths[0]} hold different tracks; compare libraries of one music folder")
        models = " + ".join(f"{spec.architecture}/{spec.transform}" for spec in library.specs())
        for feature in library.features:
            ids = evaluate.neighbours(library.vectors(feature)[rows], k, exclude_same=groups)
            results.append(_row(library, data, models, feature, k, _score(ids, truth, dataset, k, groups)))
    library, rows, truth, groups, data = reference
    if baselines:
        ids = evaluate.random_neighbours(len(rows), k, seed, exclude_same=groups)
        results.append(_row(library, data, "baseline: random", "-", k, _score(ids, truth, dataset, k, groups)))
        mfcc = mfcc_baseline([library.path_of(library.tracks[r]) for r in rows], progress)
        ids = evaluate.neighbours(mfcc, k, exclude_same=groups)
        results.append(_row(library, data, "baseline: MFCC mean+std", "-", k, _score(ids, truth, dataset, k, groups)))
    return results


def _row(library: Library, data: str, models: str, feature: str, k: int, metrics: dict) -> dict:
    synthetic = is_synthetic(library.music_dir)
    return {"data": ("SYNTHETIC " if synthetic else "") + data, "synthetic": synthetic, "models": models,
            "feature": feature, "k": k, "library": str(library.root),
            "metrics": {name.replace("@k", f"@{k}"): (None if value != value else round(float(value), 4))
                        for name, value in metrics.items()}}


def render_table(results: list[dict]) -> str:
    """Markdown: one table per data set, rows as evaluated (libraries, then baselines)."""
    lines = []
    for data in dict.fromkeys(r["data"] for r in results):
        group = [r for r in results if r["data"] == data]
        names = [m for m in group[0]["metrics"] if not m.endswith("_queries")]
        lines += [f"### Recommendation on {data}", ""]
        if group[0]["synthetic"]:
            lines += ["Synthetic data: these figures test the recommender, not music similarity.", ""]
        lines += ["| models | features | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
        for r in group:
            values = " | ".join("n/a" if r["metrics"][m] is None else f"{r['metrics'][m]:.3f}" for m in names)
            lines.append(f"| {r['models']} | {r['feature']} | {values} |")
        lines.append("")
    return "\n".join(lines)
