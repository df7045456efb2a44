"""Synthetic MagnaTagATune releases, written in the real on-disk format.

Tests and smoke runs cannot download MTAT, so this writes a small release that a loader
cannot tell apart from the real one by layout: mp3 files in folders ``0``..``f`` with MTAT
names, ``annotations_final.csv`` with the real quoting and 190 columns, and a few empty or
truncated mp3 files that are still listed in the annotations (as on the real release).

The split is written as the real one is derived: ``splits/top50_{train,valid,test}.tsv``
beside the audio, clips in the literature's folders (train 0-b, val c, test d-f) and in its
proportions (15,244 : 1,529 : 4,332). The tags are *caused by the audio*: each clip is rendered from a
style (instruments, drums, voice, tempo, loudness) and tagged from that recipe, then the
tags get MTAT-like noise (many true tags missing, a few spurious ones). A model on log-Mel
features can therefore learn the tags, but not perfectly.

The sound sources are in :mod:`datamodules.synthetic_mtat_sounds`, the styles and their tags
in :mod:`datamodules.synthetic_mtat_styles`; this module renders, labels and writes clips.
Everything is deterministic in ``seed``: each clip has its own generator seeded by
``(seed, clip_id)``, so a clip does not change when other clips are added or removed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from datamodules.mtat_format import ANNOTATIONS_FILE, MTAT_TAGS, TOP50_TAGS
from datamodules.mtat_split import (
    EXPECTED_COUNTS,
    SPLIT_FOLDERS,
    SplitEntry,
    part_of,
    write_top50_split,
)
from datamodules.split_lists import LISTED_SPLITS, lists_folder
from datamodules.synthetic_marker import mark_synthetic
from datamodules.synthetic_mtat_sounds import SOUND_SOURCES, VOICES, RenderContext
from datamodules.synthetic_mtat_styles import LEVEL_TAGS, STYLES, TEMPO_TAGS, VOICE_TAGS

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# Probability that a true tag is kept / that any other tag is switched on. MTAT labels are
# crowd-sourced and very incomplete (missing tags dominate), hence the asymmetry.
KEEP_P = 0.75
KEEP_P_NEGATIVE = 0.4  # "no vocals" & co. were applied even more sparsely
SPURIOUS_P = 0.004
LEVEL_DBFS = {"loud": -12.0, "mid": -21.0, "quiet": -32.0}
HEADROOM = np.float32(10 ** (-1 / 20))
UNSPLIT_CLIP_ID_START = 60000  # above every real MTAT clip_id (max 58915): no clash with the split


def _render(clip_id: int, seed: int, seconds: float, sr: int) -> tuple[np.ndarray, set[str]]:
    """Render one clip; return (audio float32 in [-1, 1], the tags its recipe implies)."""
    rng = np.random.default_rng([seed, clip_id])
    style = STYLES[list(STYLES)[rng.integers(len(STYLES))]]
    bpm = rng.uniform(*style.bpm)
    level = rng.choice(["loud", "mid", "quiet"], p=style.levels)
    voice = rng.choice([v for v, _ in style.voices], p=[p for _, p in style.voices])
    c = RenderContext(
        t=np.arange(int(round(seconds * sr)), dtype=np.float32) / np.float32(sr),
        sr=sr, rng=rng, beat=60.0 / bpm, root=float(rng.uniform(110, 220)),
        scale=MAJOR if rng.random() < 0.5 else MINOR,
    )
    y = np.zeros_like(c.t)
    for name in style.sources + ((voice,) if voice != "none" else ()):
        part = SOUND_SOURCES[name](c)
        y += part / (np.sqrt(np.mean(part**2)) + 1e-8) * (1.3 if name in VOICES else 1.0)
    y += 0.003 * rng.standard_normal(len(y), dtype=np.float32)  # noise floor, like a real recording
    gain_db = LEVEL_DBFS[level] + rng.uniform(-1.5, 1.5)
    y *= np.float32(10 ** (gain_db / 20) / (np.sqrt(np.mean(y**2)) + 1e-8))
    # Soft-limit peaks to -1 dBFS, like a mastering limiter (mp3 decoding may still overshoot a bit).
    y = HEADROOM * np.tanh(y / HEADROOM)

    tags = set(style.tags) | set(style.extra)
    tempo = "fast" if bpm >= 125 else "slow" if bpm <= 80 else "medium"
    for table, key in ((VOICE_TAGS, voice), (LEVEL_TAGS, level), (TEMPO_TAGS, tempo)):
        if key in table:
            tags |= set(table[key][0]) | set(table[key][1])
    return y.astype(np.float32), tags


def _noisy_labels(clip_id: int, seed: int, tags: set[str], in_split: bool) -> np.ndarray:
    """188-column 0/1 row from the true tags: drop many, add a few, like crowd-sourced MTAT."""
    rng = np.random.default_rng([seed, clip_id, 1])
    true = np.array([t in tags for t in MTAT_TAGS])
    keep = np.where([t.startswith("no ") for t in MTAT_TAGS], KEEP_P_NEGATIVE, KEEP_P)
    row = (true & (rng.random(len(MTAT_TAGS)) < keep)) | (rng.random(len(MTAT_TAGS)) < SPURIOUS_P)
    top = np.isin(MTAT_TAGS, TOP50_TAGS)
    if not in_split:
        row &= ~top  # clips outside the top-50 split are those without any top-50 tag
    elif not row[top].any():  # the split only holds clips with at least one top-50 tag
        row[np.flatnonzero(true & top)[:1]] = True
    return row.astype(np.uint8)


def part_sizes(n_clips: int) -> dict[str, int]:
    """``n_clips`` shared out in the literature's proportions (largest remainder), at least one
    clip per part: ``part_sizes(21105)`` is the real 15,244 / 1,529 / 4,332."""
    if n_clips < len(LISTED_SPLITS):
        raise ValueError(f"n_clips={n_clips}: the split needs at least one clip per part")
    total = sum(EXPECTED_COUNTS.values())
    exact = {part: n_clips * count / total for part, count in EXPECTED_COUNTS.items()}
    sizes = {part: max(1, int(x)) for part, x in exact.items()}
    for part in sorted(exact, key=lambda p: exact[p] - int(exact[p]), reverse=True)[:max(0, n_clips - sum(sizes.values()))]:
        sizes[part] += 1
    sizes["train"] -= sum(sizes.values()) - n_clips  # only where the minimum of one pushed the sum over
    return sizes


def _default_clips(rng: np.random.Generator, n_clips: int) -> list[SplitEntry]:
    """MTAT-like clips: ``<folder>/<artist>-<album>-<track>-<title>-<start>-<end>.mp3`` in the
    folders of their part, clip ids rising by a few as on the release."""
    clips, clip_id = [], 0
    for part, n in part_sizes(n_clips).items():
        for k in range(n):
            clip_id += int(rng.integers(1, 4))
            folder = SPLIT_FOLDERS[part][rng.integers(len(SPLIT_FOLDERS[part]))]
            start = 29 * int(rng.integers(0, 10))
            name = f"synthetic_artist_{k % 37:02d}-synthetic_album_{part}-{k % 12 + 1:02d}-study_{k:05d}-{start}-{start + 29}.mp3"
            clips.append(SplitEntry(clip_id, f"{folder}/{name}"))
    return clips


def make_synthetic_mtat(
    out: str | Path,
    *,
    seed: int = 0,
    n_clips: int = 200,
    seconds: float = 29.1,
    sample_rate: int = 16000,
    n_broken: int = 3,
    clip_ids: Sequence[tuple[int, str]] | None = None,
    n_unsplit: int = 4,
    workers: int | None = None,
) -> Path:
    """Write a synthetic MTAT release under ``out`` and return ``out``.

    * ``clip_ids=None``: ``n_clips`` MTAT-like clips in the literature's proportions
      (:func:`part_sizes`). Otherwise exactly these ``(clip_id, mp3_path)`` pairs, each in the
      part its folder belongs to (train 0-b, val c, test d-f).
    * The split is written to ``out/splits/top50_*.tsv`` (every clip given or made; all have
      at least one top-50 tag).
    * ``n_unsplit`` more clips outside the split (clip_id >= 60000, MTAT-like names, no top-50
      tag), because the real annotations list ~4,800 clips the top-50 split leaves out.
    * ``n_broken`` of the split clips (train ones when there are enough) are written broken,
      alternately EMPTY (0 bytes) and TRUNCATED (first 300 bytes of their mp3), and stay in
      the annotations. On the real release the known empty files (in folders 6, 8, 9) fall
      outside the split; here they are inside on purpose, so that loaders exercise their
      skip-and-count path.
    * Audio is mono mp3 at ``sample_rate`` (MTAT: 16 kHz, 29.1 s). Clips are rendered in
      ``workers`` threads (default: CPU count); numpy and the mp3 encoder release the GIL.
    """
    if seconds * sample_rate < 1:
        raise ValueError(f"seconds={seconds} at {sample_rate} Hz gives no samples")
    out = Path(out)
    rng = np.random.default_rng(seed)
    clips = _default_clips(rng, n_clips) if clip_ids is None else [SplitEntry(int(c), str(p)) for c, p in clip_ids]
    if len({c for c, _ in clips}) != len(clips) or len({p for _, p in clips}) != len(clips):
        raise ValueError("clip_ids contain duplicate clip ids or paths")
    in_split = {cid for cid, _ in clips}
    parts = {part: [c for c in sorted(clips) if part_of(c.mp3_path) == part] for part in LISTED_SPLITS}
    for j in range(n_unsplit):
        folder = "0123456789abcdef"[rng.integers(16)]
        start = 29 * int(rng.integers(0, 10))
        name = f"synthetic_artist_{j:02d}-synthetic_album-01-study_{j:02d}-{start}-{start + 29}.mp3"
        clips.append(SplitEntry(UNSPLIT_CLIP_ID_START + j, f"{folder}/{name}"))
    clips.sort()
    train = [cid for cid, _ in parts["train"]]
    candidates = train if len(train) >= n_broken else sorted(in_split)
    broken = [int(x) for x in rng.choice(candidates, min(n_broken, len(candidates)), replace=False)]

    def write(entry: SplitEntry) -> np.ndarray:
        clip_id, rel = entry
        y, tags = _render(clip_id, seed, seconds, sample_rate)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, sample_rate, format="MP3")
        if clip_id in broken:
            keep = 0 if broken.index(clip_id) % 2 == 0 else 300
            path.write_bytes(path.read_bytes()[:keep])
        return _noisy_labels(clip_id, seed, tags, clip_id in in_split)

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as executor:
        rows = list(executor.map(write, clips))

    def quoted(values) -> str:
        return "\t".join(f'"{v}"' for v in values) + "\n"

    with open(out / ANNOTATIONS_FILE, "w", encoding="utf-8", newline="") as f:
        f.write(quoted(["clip_id", *MTAT_TAGS, "mp3_path"]))
        for (clip_id, rel), row in zip(clips, rows):
            f.write(quoted([clip_id, *row.tolist(), rel]))
    write_top50_split(lists_folder(out), parts)
    mark_synthetic(out, f"Synthetic MagnaTagATune (musiczoo, seed {seed}, {seconds:g} s clips at {sample_rate} Hz)")
    return out
