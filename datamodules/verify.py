"""Is my copy of GTZAN or MagnaTagATune complete and usable? ``verify("gtzan", root)``.

Training finds out late and quietly: a file missing from a split is an error only once the
cache build reaches it, and an undecodable file is skipped with one warning among many log
lines. Downloads of both datasets are often partial (an interrupted multi-part zip, a
re-upload that dropped a folder), and both releases ship a few broken files that everybody
has. This module answers up front, in one report: what layout was found, how many files
each folder holds against the real release, which files are missing or unexpected, which
do not decode (and which of those are the known faults of the release, not of your copy),
and whether the data modules will train on it.

``python -m datamodules.verify gtzan|mtat ROOT`` prints the summary; exit status 1 when unusable.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from datamodules.primitives.audio import AudioDecodeError, decode_audio

from .gtzan import GENRES, find_gtzan, split_list
from .mtat_format import ANNOTATIONS_FILE, read_annotations
from .mtat_split import load_top50_split
from .split_lists import LISTED_SPLITS, MissingListError
from .synthetic_marker import is_synthetic

DATASETS = ("gtzan", "mtat")

GTZAN_CLIPS_PER_GENRE = 100
#: Files that are unreadable in every copy of a release: reported, but not held against your copy.
KNOWN_FAULTY = {
    "jazz/jazz.00054.wav": "empty in the common re-release (genres_original); the original tarball's .au is fine",
}
#: GTZAN's standard split; the data module trains on it by default.
GTZAN_SPLIT = "fault_filtered"

MTAT_FOLDERS = tuple("0123456789abcdef")
#: Clips per folder of the real MagnaTagATune release, counted from the 25,863-line clip index
#: ``data/index/mtt/index_mtt.tsv`` of jordipons/musicnn-training (fetched into ``splits/`` by download).
MTAT_FOLDER_CLIPS = {
    "0": 1108, "1": 1543, "2": 1562, "3": 1238, "4": 2421, "5": 1604, "6": 1788, "7": 1163,
    "8": 1144, "9": 1773, "a": 1417, "b": 1948, "c": 1825, "d": 1677, "e": 1547, "f": 2105,
}
MTAT_CLIPS = sum(MTAT_FOLDER_CLIPS.values())  # 25,863
_MTAT_EMPTY = "0 bytes in the distributed archive (every copy); outside the top-50 split"
MTAT_KNOWN_FAULTY = {
    "6/norine_braun-now_and_zen-08-gently-117-146.mp3": _MTAT_EMPTY,
    "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3": _MTAT_EMPTY,
    "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_couperin-88-117.mp3":
        _MTAT_EMPTY,
}
#: The MTAT data module skips unreadable split files; past this fraction of the split the copy
#: is damaged rather than carrying the odd bad file, and results on it would not compare.
MAX_UNREADABLE_FRACTION = 0.01

LISTED = 10  # names shown per problem line; the report's lists hold them all

# The clip names find_gtzan accepts, to find a GTZAN layout that lacks whole genre folders.
_GTZAN_CLIP = re.compile(r"^([a-z]+)\.\d{5}\.(wav|au)$")


@dataclass
class Report:
    """What :func:`verify` found. Paths are relative to the folder the data module reads
    (GTZAN: the genre folders' parent; MTAT: the root), as the data modules key clips."""

    dataset: str
    root: Path
    layout: str
    counts: dict[str, tuple[int, int]]  # folder -> (files found, files in the real release)
    missing: list[str]
    extra: list[str]
    unreadable: list[tuple[str, str]]  # (path, why it does not decode)
    known_faulty: list[tuple[str, str]]  # the unreadable ones every copy has: (path, why that is known)
    files_checked: int
    usable: bool
    problems: list[str]  # one line each, for people
    not_usable_because: list[str] = field(default_factory=list)  # empty when usable
    seconds: float = 0.0

    @property
    def files_per_second(self) -> float:
        return self.files_checked / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """Counts table, one line per problem, and the verdict last (``usable: yes``/``usable: NO (why)``)."""
        lines = [f"{self.dataset.upper()}: {self.layout}", f"{'folder':<10}{'found':>8}{'expected':>10}"]
        for folder, (found, expected) in self.counts.items():
            off = "" if found == expected else f"  ({found - expected:+d})"
            lines.append(f"{folder:<10}{found:>8}{expected:>10}{off}")
        found, expected = (sum(c[i] for c in self.counts.values()) for i in (0, 1))
        lines.append(f"{'total':<10}{found:>8}{expected:>10}")
        lines.append(f"decoded {self.files_checked} files in {self.seconds:.1f} s ({self.files_per_second:.0f} files/s)")
        lines += self.problems
        lines.append("usable: yes" if self.usable else f"usable: NO ({'; '.join(self.not_usable_because)})")
        return "\n".join(lines)


def verify(dataset: str, root: str | os.PathLike, *, workers: int | None = None, progress: bool = True) -> Report:
    """Check the copy of ``dataset`` (``gtzan`` or ``mtat``) under ``root``; decode every file.

    Decoding runs in ``workers`` processes (default ``min(4, CPU count)``); ``progress`` shows
    a progress bar. Raises ``FileNotFoundError`` saying what ``root`` holds instead when it
    holds no copy of the dataset at all; anything less (missing folders, files, annotations)
    is reported, so one run lists everything that is wrong.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    started = time.perf_counter()
    check = _verify_gtzan if dataset == "gtzan" else _verify_mtat
    report = check(Path(root).expanduser(), workers, progress)
    report.seconds = time.perf_counter() - started
    return report


# ----------------------------------------------------------------------------------------------
# GTZAN
# ----------------------------------------------------------------------------------------------
def _verify_gtzan(root: Path, workers: int, progress: bool) -> Report:
    data_dir, ext = _gtzan_layout(root)
    counts, missing, extra, present = {}, [], [], []
    for genre in GENRES:
        expected = [f"{genre}/{genre}.{i:05d}{ext}" for i in range(GTZAN_CLIPS_PER_GENRE)]
        on_disk = set(_files_in(data_dir, genre))
        counts[genre] = (sum(p in on_disk for p in expected), len(expected))
        present += [p for p in expected if p in on_disk]
        missing += [p for p in expected if p not in on_disk]
        extra += sorted(on_disk - set(expected))
    unreadable = _decode_all(data_dir, present, workers, progress, "verifying GTZAN")

    problems = []
    absent = [g + "/" for g in GENRES if not (data_dir / g).is_dir()]
    if absent:
        problems.append(f"genre folders missing: {', '.join(absent)}")
    if missing:
        problems.append(f"missing {len(missing)} of {len(GENRES) * GTZAN_CLIPS_PER_GENRE} clips: {_listing(missing)}")
    if extra:
        problems.append(f"{_count(len(extra), 'unexpected file')} in the genre folders: {_listing(extra)}")
    problems += _unreadable_lines(unreadable, KNOWN_FAULTY)

    # The lists name .wav files; the original tarball has .au (as GTZANDataModule.locate maps them).
    split_files = [Path(e).with_suffix(ext).as_posix()
                   for part in LISTED_SPLITS for e in split_list(GTZAN_SPLIT, part)]
    missing_from_split = set(split_files) & set(missing)
    unknown_unreadable = [p for p, _ in unreadable if p not in KNOWN_FAULTY]
    reasons = []
    if missing_from_split:
        reasons.append(f"{_count(len(missing_from_split), 'file')} of the {GTZAN_SPLIT} split missing")
    if unknown_unreadable:
        reasons.append(f"{_count(len(unknown_unreadable), 'unreadable file')} that {'is' if len(unknown_unreadable) == 1 else 'are'} not a known fault")

    kind = {"genres_original": "re-release", "genres": "original tarball"}.get(data_dir.name, "genre folders in root")
    return Report(
        dataset="gtzan", root=root, layout=f"{data_dir} ({kind}, <genre>/<genre>.000NN{ext}){_synthetic_note(data_dir)}",
        counts=counts, missing=missing, extra=extra, unreadable=unreadable,
        known_faulty=[(p, KNOWN_FAULTY[p]) for p, _ in unreadable if p in KNOWN_FAULTY],
        files_checked=len(present), usable=not reasons, problems=problems, not_usable_because=reasons)


def _gtzan_layout(root: Path) -> tuple[Path, str]:
    """:func:`find_gtzan`'s answer; failing that, the same candidates with some genre folders
    absent (find_gtzan needs all ten), so that a copy missing a folder is reported, not refused."""
    try:
        return find_gtzan(root)
    except FileNotFoundError:
        for candidate in (root / "genres_original", root / "genres", root):
            suffixes = [m.group(2) for g in GENRES if (candidate / g).is_dir() for p in (candidate / g).iterdir()
                        if (m := _GTZAN_CLIP.match(p.name)) and m.group(1) == g]
            if suffixes:
                return candidate, "." + max(set(suffixes), key=suffixes.count)
        raise


# ----------------------------------------------------------------------------------------------
# MagnaTagATune
# ----------------------------------------------------------------------------------------------
def _verify_mtat(root: Path, workers: int, progress: bool) -> Report:
    annotations = root / ANNOTATIONS_FILE
    folders = [f for f in MTAT_FOLDERS if (root / f).is_dir()]
    if not annotations.is_file() and not folders:
        raise FileNotFoundError(_mtat_not_found(root))

    problems, reasons = [], []
    listed: dict[int, str] | None = None  # clip_id -> mp3_path, when the annotations are readable
    if not annotations.is_file():
        problems.append(f"{ANNOTATIONS_FILE} is missing: no labels, and nothing to check the mp3 files against")
        reasons.append(f"{ANNOTATIONS_FILE} missing")
    else:
        try:
            clip_ids, _, _, mp3_paths = read_annotations(annotations)
            listed = dict(zip(clip_ids.tolist(), mp3_paths))
        except (OSError, ValueError) as e:
            problems.append(f"{ANNOTATIONS_FILE} is unreadable: {e}")
            reasons.append(f"{ANNOTATIONS_FILE} unreadable")

    on_disk = [p for f in MTAT_FOLDERS for p in _files_in(root, f)]
    mp3s = [p for p in on_disk if p.endswith(".mp3")]
    counts = {f: (sum(p.startswith(f + "/") for p in mp3s), MTAT_FOLDER_CLIPS[f]) for f in MTAT_FOLDERS}
    unreadable = _decode_all(root, mp3s, workers, progress, "verifying MTAT")

    if len(mp3s) < MTAT_CLIPS:  # a partial download, or a synthetic release; the data module warns and goes on
        problems.append(f"incomplete: {len(mp3s):,} of {MTAT_CLIPS:,} clips (the real release's count; per folder above)")
    elif len(mp3s) > MTAT_CLIPS:
        problems.append(f"{len(mp3s):,} clips, more than the real release's {MTAT_CLIPS:,}")
    missing, extra = [], []
    if listed is not None:
        present = set(on_disk)
        missing = [p for p in listed.values() if p not in present]
        extra = sorted(present - set(listed.values()))
        if missing:
            problems.append(f"missing {len(missing):,} of the {len(listed):,} clips {ANNOTATIONS_FILE} lists: {_listing(missing)}")
        if extra:
            problems.append(f"{_count(len(extra), 'file')} that {ANNOTATIONS_FILE} does not list: {_listing(extra)}")
        reasons += _mtat_split_reasons(root, listed, set(missing), unreadable)
    problems += _unreadable_lines(unreadable, MTAT_KNOWN_FAULTY)

    layout = (f"{root} (MagnaTagATune release: {len(folders)} of the 16 mp3 folders 0..f, "
              f"{ANNOTATIONS_FILE} {'present' if annotations.is_file() else 'missing'}){_synthetic_note(root)}")
    return Report(
        dataset="mtat", root=root, layout=layout, counts=counts, missing=missing, extra=extra,
        unreadable=unreadable,
        known_faulty=[(p, MTAT_KNOWN_FAULTY[p]) for p, _ in unreadable if p in MTAT_KNOWN_FAULTY],
        files_checked=len(mp3s), usable=not reasons, problems=problems, not_usable_because=reasons)


def _mtat_split_reasons(root: Path, listed: dict[int, str], missing: set[str],
                        unreadable: list[tuple[str, str]]) -> list[str]:
    """Why MTATDataModule would refuse or mistrust this copy (it matches the split to the
    annotations by clip_id and uses the split clips they list), as in its ``split_items``."""
    needed, mismatched = [], 0
    try:
        split = [entry for part in LISTED_SPLITS for entry in load_top50_split(root, part)]
    except MissingListError as e:
        return [str(e)]
    for clip_id, mp3 in split:
        if clip_id in listed:
            needed.append(mp3)
            mismatched += listed[clip_id] != mp3
    if not needed:
        return [f"{ANNOTATIONS_FILE} lists none of the clips of the top-50 split"]
    if mismatched:
        return [(f"{ANNOTATIONS_FILE} gives {_count(mismatched, 'split clip')} another mp3_path: "
                 "the annotations belong to another release")]
    reasons = []
    needed_missing = missing.intersection(needed)
    if needed_missing:
        reasons.append(f"{_count(len(needed_missing), 'mp3 file')} of the top-50 split missing")
    needed_unreadable = set(needed).intersection(p for p, _ in unreadable)
    if len(needed_unreadable) > MAX_UNREADABLE_FRACTION * len(needed):
        reasons.append(f"{len(needed_unreadable)} of the {len(needed)} split files unreadable "
                       f"(more than {MAX_UNREADABLE_FRACTION:.0%}): the copy looks damaged")
    return reasons


def _mtat_not_found(root: Path) -> str:
    """The MTAT counterpart of find_gtzan's message: what was expected, and what is there instead."""
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()) if root.is_dir() else None
    return (f"no MagnaTagATune data under {root}: expected {ANNOTATIONS_FILE} and the mp3 folders "
            f"0..f (as unpacked from mp3.zip.001-003) directly in it; found "
            + ("nothing (no such folder)" if found is None else
               f"{len(found)} entries: {_listing(found, 12)}" if found else "an empty folder"))


# ----------------------------------------------------------------------------------------------
# Shared
# ----------------------------------------------------------------------------------------------
def _files_in(base: Path, folder: str) -> list[str]:
    """``folder/name`` of each entry of ``base/folder``, sorted; none when it does not exist.
    Hidden entries (macOS ``._name`` twins, ``.DS_Store``) are left out: no loader reads them."""
    path = base / folder
    if not path.is_dir():
        return []
    return sorted(f"{folder}/{p.name}" for p in path.iterdir() if not p.name.startswith("."))


def _why_unreadable(path: str) -> str:
    """``""`` when the file decodes, else why not. Runs in a worker process.

    Decodes with the project's one rule (:func:`decode_audio`) at the file's own rate:
    resampling would cost time and prove nothing more about the file.
    """
    try:
        rate = sf.info(path).samplerate
    except (sf.LibsndfileError, OSError):  # no readable header: decode_audio fails below and says why in its words
        rate = 22050
    try:
        decode_audio(path, rate)
    except AudioDecodeError as e:
        return str(e).replace(f"'{path}'", "the file")  # the report names the file already
    return ""


def _decode_all(base: Path, files: list[str], workers: int, progress: bool, desc: str) -> list[tuple[str, str]]:
    """``(file, reason)`` for each of ``files`` (relative to ``base``) that does not decode, in order."""
    paths = [str(base / f) for f in files]
    with tqdm(total=len(paths), desc=desc, unit="file", disable=not progress) as bar:
        if workers > 1 and len(paths) > 1:
            # fork: workers start at once, with soundfile and torch already imported.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            # Chunks amortise the inter-process round trip over several files; ~8 per worker keeps the load even.
            chunksize = max(1, min(64, len(paths) // (8 * workers)))
            with multiprocessing.get_context(method).Pool(workers) as pool:
                reasons = []
                for reason in pool.imap(_why_unreadable, paths, chunksize=chunksize):
                    reasons.append(reason)
                    bar.update()
        else:
            reasons = []
            for path in paths:
                reasons.append(_why_unreadable(path))
                bar.update()
    return [(f, reason) for f, reason in zip(files, reasons) if reason]


def _unreadable_lines(unreadable: list[tuple[str, str]], known: dict[str, str]) -> list[str]:
    """One problem line per unreadable file (the unknown ones up to LISTED, then a count)."""
    lines = [f"known fault: {p}: {reason} ({known[p]})" for p, reason in unreadable if p in known]
    unknown = [(p, reason) for p, reason in unreadable if p not in known]
    lines += [f"unreadable: {p}: {reason}" for p, reason in unknown[:LISTED]]
    if len(unknown) > LISTED:
        lines.append(f"unreadable: ... and {len(unknown) - LISTED} more (Report.unreadable lists them all)")
    return lines


def _listing(names: list[str], limit: int = LISTED) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _synthetic_note(path: Path) -> str:
    """Say so when the copy is one of the synthetic stand-ins: it passes, but it is not the dataset."""
    return " [synthetic: generated audio, not the real dataset]" if is_synthetic(path) else ""


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in DATASETS:
        sys.exit(f"usage: python -m datamodules.verify {{{','.join(DATASETS)}}} ROOT")
    try:
        result = verify(sys.argv[1], sys.argv[2])
    except FileNotFoundError as e:
        sys.exit(str(e))
    print(result.summary())
    sys.exit(0 if result.usable else 1)
