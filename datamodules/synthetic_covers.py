"""A synthetic version-identification ("cover song") dataset, for tests and smoke runs.

Covers80, Da-TACOS and SHS100K cannot be downloaded in tests, so this writes a small collection
in the clique-table layout that :class:`~datamodules.covers.CliqueTableDataModule` reads:
``audio/<work_id>/<performance_id>.wav`` and ``cliques.csv`` (``work_id,performance_id,file``).
It is generated audio, not recorded music, and says so (:func:`~datamodules.synthetic_marker.mark_synthetic`).

**What a work is** (what survives covering): a mode (a 7-note scale of
:data:`~datamodules.synthetic_styles.SCALES`), a chord progression of 4-8 bars (chords stacked in
thirds on the mode's degrees, either drawn freely or following the roots of one of the stock
:data:`~datamodules.synthetic_styles.PROGRESSIONS`), two melodies over it (sections A and B:
each a one-bar motif anchored on each bar's chord and varied, B a few degrees higher, as a
chorus), and a base tempo. A work is a pure function of ``(seed, work)``.

**What changes per version** (a performance): the key (all 12 transpositions; the versions of a
work are in different keys, the first not necessarily the work's "original"), the tempo (the
base tempo x 0.85-1.15), the style (instruments of the chords, lead and bass, comping rhythm,
bass idiom, swing, distortion, drums or none), the structure (an intro of chords only or not,
the sections in another order, starting some bars into the first one: the same time offset does
not hold the same music), the mix levels, spectral tilt, noise and peak level.

**Why styles cross works**: a version's style is drawn from a random genre of
:data:`~datamodules.synthetic_styles.GENRE_STYLES`, independently of the work. Two versions of
one work sound like different genres and different works share genres, so timbre or genre
features (mean MFCCs, a genre model's embedding) do not find the versions of a work, while
key-invariant pitch and harmony features do. That is the task version identification is.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .synthetic import drum_hit, render_line, step_times, voice_chord
from .synthetic_marker import mark_synthetic
from .synthetic_styles import COMPS, DRUMS, GENRE_STYLES, PROGRESSIONS, SCALES

#: The modes a work is in (the 7-note scales, so that chords stack in thirds on every degree).
MODES = ("major", "minor", "dorian", "mixolydian", "harmonic_minor", "phrygian")
#: Share of works whose chord roots follow a stock progression (as many songs share one).
STOCK_SHARE = 0.3
#: Weights of each scale degree as the root of a freely drawn chord (I, ii, iii, IV, V, vi, vii).
DEGREE_WEIGHTS = np.array([3, 2, 1, 3, 3, 2, 0.5])
BARS, BASE_BPM, TEMPO_FACTOR = (4, 8), (76, 150), (0.85, 1.15)
#: Share of the longer progressions with a chord borrowed from outside the mode, and its roots.
BORROWED, BORROWED_ROOTS = 0.4, (10, 8, 3, 2)
#: Forms of a performance: I = intro (the first half of the progression, chords only), A and B
#: the two melody sections, each one pass of the progression. The form repeats to fill the clip.
FORMS = (("A", "B"), ("I", "A", "B"), ("B", "A"), ("A", "A", "B"), ("I", "B", "A"), ("A", "B", "B"), ("I", "A"))
#: Share of versions without drums, whatever their style.
NO_DRUMS = 0.2
#: Bass idioms: (step in the bar, chord tone index, octave) per note.
BASS = {
    "root8": [(s, 0, 0) for s in range(0, 16, 2)], "root16": [(s, 0, 0) for s in range(16)],
    "octave8": [(s, 0, s % 4 // 2) for s in range(0, 16, 2)], "rootfifth": [(0, 0, 0), (8, 2, -1)],
    "walk": [(0, 0, 0), (4, 1, 0), (8, 2, 0), (12, 1, 0)], "sustain": [(0, 0, 0)],
    "808": [(0, 0, 0), (7, 0, 0), (10, 0, 0)], "reggae": [(0, 0, 0), (6, 0, 0), (8, 2, 0), (12, 0, 1)],
    "sparse": [(0, 0, 0), (10, 2, 0)], "none": [],
}


@dataclass(frozen=True)
class Work:
    """What every version of a work shares, relative to its tonic (pitch class 0)."""

    mode: str
    chords: tuple[tuple[int, ...], ...]  # per bar: the chord's pitch classes, root first
    melodies: dict  # "A", "B": ((step from the section's start, length in steps, semitones above the tonic), ...)
    bpm: float  # the base tempo


@dataclass(frozen=True)
class VersionRecipe:
    """How one performance renders its work: drawn independently of the work, except the tempo
    (the work's, scaled) and the key (a transposition no other version of the work has)."""

    key: int  # semitones above C of the tonic
    tempo_factor: float
    bpm: float
    style: str  # the genre of GENRE_STYLES the instruments, drums, swing and distortion come from
    chord_inst: str
    lead_inst: str
    bass_inst: str
    bass: str  # a BASS idiom
    comp: str  # a COMPS rhythm of the chords
    drums: str  # a DRUMS pattern, or "none"
    swing: float
    drive: float
    structure: tuple[str, ...]  # the form, repeated to fill the clip
    start_bar: int  # bars into the first section where the clip starts
    levels_db: tuple[float, float, float, float]  # drums, bass, chords, lead (each first at unit RMS)
    tilt_db: float  # dB per octave about 1 kHz
    snr_db: float
    peak_db: float


def _degree_pc(scale: list[int], degree: int) -> int:
    """Semitones above the tonic of a scale degree (any integer: other octaves too)."""
    return 12 * (degree // len(scale)) + scale[degree % len(scale)]


def _motif_melody(rng, scale: list[int], roots: list[int], lift: int) -> tuple:
    """A melody over the progression: a one-bar motif (rhythm and contour) drawn once, restated on
    each bar from a chord tone, some bars varied; the last bar ends on a long tonic. This makes the
    melody distinctive per work while keeping the repetition real melodies have."""
    onsets = np.sort(rng.choice(np.arange(0, 16, 2), int(rng.integers(3, 7)), replace=False))
    contour = np.cumsum(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3], len(onsets)))
    contour = np.clip(contour - int(round(contour.mean())), -4, 4)  # a motif spans about an octave
    notes = []
    for bar, root in enumerate(roots):
        steps, shape = onsets, contour
        if rng.random() < 0.35:  # a varied bar: another rhythm, the contour kept
            steps = np.sort(rng.choice(16, len(onsets), replace=False))
        if rng.random() < 0.35:
            shape = shape + rng.choice([-1, 0, 0, 1], len(shape))
        anchor = (root + 2 * int(rng.integers(0, 2))) % 7 + lift  # the root or the third of the bar's chord
        last = bar == len(roots) - 1
        if last:  # a cadence: the motif's first half, then the tonic held from beat 3
            steps, shape = steps[steps < 8][:3], shape[steps < 8][:3]
        ends = np.append(steps[1:], 8 if last else 16)
        for s, e, d in zip(steps, ends, shape):
            notes.append((16 * bar + int(s), int(e - s), _degree_pc(scale, int(np.clip(anchor + d, -3, 12)))))
        if last:
            notes.append((16 * bar + 8, 8, _degree_pc(scale, 7 * (lift > 2))))
    return tuple(notes)


def _nearest_degree(scale: list[int], pc: int) -> int:
    """The scale degree nearest a pitch class: where a melody anchors on a chord from outside the mode."""
    return int(np.argmin([min(abs(pc - x) % 12, 12 - abs(pc - x) % 12) for x in scale]))


def _progression(rng, scale: list[int]) -> tuple[list[int], list[tuple[int, ...]]]:
    """(scale degree of each bar's root, each bar's pitch classes): a 4-bar phrase, from the tonic
    (or one of the stock progressions' roots, on the mode's nearest degrees), extended to 5-8
    bars as songs extend theirs: the phrase's opening again, then a new turnaround of one or two
    chords, one of them sometimes borrowed from outside the mode (a major triad on bVII, bVI, bIII
    or II), which gives a work pitch classes other works lack."""
    weights = DEGREE_WEIGHTS / DEGREE_WEIGHTS.sum()
    if rng.random() < STOCK_SHARE:
        stock = [p for p in PROGRESSIONS.values() if len(p) <= 4]
        prog = stock[int(rng.integers(len(stock)))]
        phrase = [_nearest_degree(scale, r) for r, _ in (prog * 2)[:4]]
    else:
        phrase = [0] + [int(d) for d in rng.choice(7, 3, p=weights)]
    n = int(rng.integers(BARS[0], BARS[1] + 1))
    roots = phrase + phrase[:max(0, n - 6)] + [int(d) for d in rng.choice(7, min(2, n - 4), p=weights)]
    chords = [tuple(_degree_pc(scale, r + 2 * k) % 12 for k in range(3 + (rng.random() < 0.3))) for r in roots]
    if n > 4 and rng.random() < BORROWED:
        pc = int(rng.choice(BORROWED_ROOTS))
        chords[-1 - int(rng.integers(min(2, n - 4)))] = (pc, (pc + 4) % 12, (pc + 7) % 12)
        roots = [_nearest_degree(scale, c[0]) for c in chords]
    return roots, chords


def work_material(work: int, seed: int = 0) -> Work:
    """Work number ``work`` (1, 2, ...): its mode, progression, melodies and base tempo; a pure
    function of ``(seed, work)``, so it does not depend on how many works are written."""
    rng = np.random.default_rng([seed, work, 0])
    mode = str(rng.choice(MODES))
    scale = SCALES[mode]
    roots, chords = _progression(rng, scale)
    melodies = {"A": _motif_melody(rng, scale, roots, 0), "B": _motif_melody(rng, scale, roots, int(rng.integers(2, 5)))}
    return Work(mode, tuple(chords), melodies, float(rng.uniform(*BASE_BPM)))


def _pick(rng, choices: list[str]) -> str:
    """One of a style's choices; earlier ones are more typical (weights 1, 1/2, 1/3, ...), as in the synthetic GTZAN."""
    weights = 1.0 / np.arange(1, len(choices) + 1)
    return choices[int(rng.choice(len(choices), p=weights / weights.sum()))]


def version_recipe(work: int, version: int, seed: int = 0) -> VersionRecipe:
    """How version number ``version`` (1, 2, ...) of work ``work`` is performed; a pure function of
    ``(seed, work, version)``. Its keys are a permutation of the 12 drawn per work, so up to 12
    versions of a work are all in different keys."""
    key = int(np.random.default_rng([seed, work, 1]).permutation(12)[(version - 1) % 12])
    rng = np.random.default_rng([seed, work, version, 2])
    genre = str(rng.choice(sorted(GENRE_STYLES)))
    style = GENRE_STYLES[genre]
    factor = float(rng.uniform(*TEMPO_FACTOR))
    drums = "none" if rng.random() < NO_DRUMS else _pick(rng, style["drums"])
    structure = FORMS[int(rng.integers(len(FORMS)))]
    return VersionRecipe(
        key=key, tempo_factor=factor, bpm=work_material(work, seed).bpm * factor, style=genre,
        chord_inst=_pick(rng, style["chord_inst"]), lead_inst=_pick(rng, style["lead"]),
        bass_inst=_pick(rng, style["bass_inst"]), bass=_pick(rng, style["bass"]), comp=_pick(rng, style["comp"]),
        drums=drums, swing=float(rng.uniform(*style["swing"])), drive=float(rng.uniform(*style["drive"])),
        structure=structure, start_bar=int(rng.integers(0, 4)) if structure[0] != "I" else 0,
        levels_db=tuple(float(rng.uniform(*span)) for span in style["levels"]),
        tilt_db=float(rng.uniform(-3, 3)), snr_db=float(rng.uniform(25, 45)), peak_db=float(rng.uniform(-6, -1)),
    )


class _Performance:
    """One version rendered: the form laid out bar by bar on a 16th-note grid, then chords, bass,
    melody and drums on it, mixed and mastered."""

    def __init__(self, work: Work, r: VersionRecipe, n: int, sr: int, rng):
        self.work, self.r, self.n, self.sr, self.rng = work, r, n, sr, rng
        self.step = 60.0 / r.bpm / 4 * sr
        n_bars = int(np.ceil(n / (16 * self.step))) + 1
        self.times = step_times(16 * n_bars, self.step, r.swing, sr, rng)
        # (section, bar within it) of each bar of the clip: the form repeated, from start_bar on.
        layout, bars = [], len(work.chords)
        while len(layout) < n_bars + r.start_bar:
            for section in r.structure:
                layout += [(section, b) for b in range(bars // 2 if section == "I" else bars)]
        self.layout = layout[r.start_bar:r.start_bar + n_bars]

    def _line(self, notes: list[tuple[int, float, int]], inst: str) -> np.ndarray:
        """Notes given as (step, length in steps, MIDI pitch), with random velocities."""
        if not notes:
            return np.zeros(self.n, np.float32)
        steps, gates, midi = (np.array(x) for x in zip(*notes))
        keep = steps < len(self.times)
        amps = self.rng.uniform(0.75, 1.0, int(keep.sum())).astype(np.float32)
        return render_line(self.times[steps[keep]], (gates[keep] * self.step).astype(np.int64), midi[keep], amps,
                           self.n, self.sr, inst, self.rng)

    def harmony(self) -> np.ndarray:
        """The chords, voiced near middle C in the version's key, in its comping rhythm."""
        attacks, hold = COMPS[self.r.comp]
        center = 55 + self.rng.uniform(-4, 4)
        voices: dict[int, list] = {}
        for k, (_, b) in enumerate(self.layout):
            tones = voice_chord([(self.r.key + pc) % 12 for pc in self.work.chords[b]], center)
            for i, s in enumerate(attacks):
                gate = hold * ((attacks[i + 1] if i + 1 < len(attacks) else 16 + attacks[0]) - s)
                for j in ([i % len(tones)] if self.r.comp.startswith("arp") else range(len(tones))):
                    voices.setdefault(j, []).append((16 * k + s, gate, tones[j]))
        return sum((self._line(v, self.r.chord_inst) for v in voices.values()), np.zeros(self.n, np.float32))

    def bass(self) -> np.ndarray:
        """The bass idiom on each bar's chord, the root between E1 and D#2."""
        pattern, notes = BASS.get(self.r.bass, BASS["root8"]), []
        for k, (_, b) in enumerate(self.layout):
            chord = self.work.chords[b]
            root = 28 + (self.r.key + chord[0] - 4) % 12
            for i, (s, tone, octave) in enumerate(pattern):
                nxt = pattern[i + 1][0] if i + 1 < len(pattern) else 16
                notes.append((16 * k + s, 0.85 * (nxt - s), root + (chord[tone] - chord[0]) % 12 + 12 * octave))
        return self._line(notes, self.r.bass_inst)

    def lead(self) -> np.ndarray:
        """The section's melody in the version's key (tonic F#3..F4); silent in the intro."""
        tonic = 60 + self.r.key - 12 * (self.r.key > 6)
        notes = [(16 * k + s - 16 * b, gate, tonic + pitch)
                 for k, (section, b) in enumerate(self.layout) if section != "I"
                 for s, gate, pitch in self.work.melodies[section] if 16 * b <= s < 16 * (b + 1)]
        return self._line(notes, self.r.lead_inst)

    def drums(self) -> np.ndarray:
        """The drum pattern on every bar, humanised: velocities vary and a few hits are dropped."""
        out = np.zeros(self.n + self.sr, np.float32)
        for inst, pattern in DRUMS[self.r.drums].items():
            sound = drum_hit(inst, self.sr, self.rng).astype(np.float32)
            vel = np.array([{"x": 1.0, "o": 0.45, ".": 0.0}[c] for c in pattern] * len(self.layout), np.float32)
            vel *= self.rng.uniform(0.7, 1.0, len(vel)) * (self.rng.random(len(vel)) > 0.04)
            for s in np.flatnonzero(vel[: len(self.times)]):
                o = self.times[s]
                if 0 <= o < self.n:
                    out[o:o + len(sound)] += vel[s] * sound
        return out[: self.n]

    def render(self) -> np.ndarray:
        """The parts at the style's levels (the chords distorted as rock and metal are), then tilt,
        noise and a peak level below full scale (headroom, as the other generators leave)."""
        r = self.r
        parts = [self.drums(), self.bass(), self.harmony(), self.lead()]
        if r.drive > 0:
            parts[2] = np.tanh(r.drive * parts[2] / (np.abs(parts[2]).max() + 1e-9)) / np.tanh(r.drive)
        mix = np.zeros(self.n, np.float32)
        for x, level in zip(parts, r.levels_db):
            rms = float(np.sqrt(np.mean(x ** 2)))
            if rms > 1e-6:
                mix += x * np.float32(10 ** (level / 20) / rms)
        f = np.fft.rfftfreq(self.n, 1 / self.sr)
        gain = (10 ** (r.tilt_db * np.clip(np.log2(np.maximum(f, 1.0) / 1000), -4, 4) / 20)).astype(np.float32)
        y = np.fft.irfft(np.fft.rfft(mix) * gain, self.n)  # float32 throughout: half the work of float64
        noise = self.rng.standard_normal(self.n, dtype=np.float32)
        y += np.float32(np.sqrt(np.mean(y ** 2)) * 10 ** (-r.snr_db / 20)) * noise
        return (y * np.float32(10 ** (r.peak_db / 20) / (np.abs(y).max() + 1e-9))).astype(np.float32)


def synth_performance(work: int, version: int, *, seed: int = 0, seconds: float = 12.0,
                      sample_rate: int = 22050) -> np.ndarray:
    """Version ``version`` of work ``work`` as float32 mono in [-1, 1]; a pure function of its arguments."""
    rng = np.random.default_rng([seed, work, version, 3])
    return _Performance(work_material(work, seed), version_recipe(work, version, seed),
                        int(round(seconds * sample_rate)), sample_rate, rng).render()


def work_id(work: int) -> str:
    return f"W_{work:04d}"


def performance_id(work: int, version: int) -> str:
    return f"P_{work:04d}_{version}"


def make_synthetic_covers(out: str | Path, n_works: int = 60, versions: int = 4, seconds: float = 12.0,
                          sample_rate: int = 22050, seed: int = 0, workers: int | None = None) -> Path:
    """Write ``n_works`` works x ``versions`` performances under ``out`` and return ``out``.

    Works are numbered 1..n_works (``W_0001``), versions 1..versions (``P_0001_1``), each file
    ``audio/<work_id>/<performance_id>.wav``, 16-bit PCM, and listed in ``cliques.csv``. Files are
    rendered in ``workers`` threads (default: the CPU count; numpy and soundfile release the GIL);
    the bytes are the same for any number of workers and any ``n_works`` (a work does not depend on
    how many others there are).
    """
    if n_works < 1 or versions < 1:
        raise ValueError(f"n_works and versions must be at least 1, got {n_works} and {versions}")
    if seconds * sample_rate < 1:
        raise ValueError(f"seconds={seconds} at {sample_rate} Hz gives no samples")
    out = Path(out)
    jobs = [(w, v) for w in range(1, n_works + 1) for v in range(1, versions + 1)]
    for w in range(1, n_works + 1):
        (out / "audio" / work_id(w)).mkdir(parents=True, exist_ok=True)

    def write(job: tuple[int, int]) -> str:
        w, v = job
        file = f"audio/{work_id(w)}/{performance_id(w, v)}.wav"
        audio = synth_performance(w, v, seed=seed, seconds=seconds, sample_rate=sample_rate)
        sf.write(out / file, audio, sample_rate, format="WAV", subtype="PCM_16")
        return file

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as executor:
        files = list(executor.map(write, jobs))
    with open(out / "cliques.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["work_id", "performance_id", "file"])
        writer.writerows([work_id(w), performance_id(w, v), file] for (w, v), file in zip(jobs, files))
    mark_synthetic(out, f"Synthetic covers (musiczoo, seed {seed}, {n_works} works x {versions} versions of "
                        f"{seconds:g} s at {sample_rate} Hz)")
    return out
