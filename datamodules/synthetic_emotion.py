"""A synthetic stand-in for DEAM: the real layout, and valence and arousal that a model has to hear.

Tests and smoke runs cannot download DEAM, so this writes a small one that
:class:`~datamodules.emotion.DEAMDataModule` cannot tell apart from the real one by layout:
``MEMD_audio/<song_id>.mp3`` and the two static annotation files with the real headers (a space
after each comma), songs ``1..`` in ``static_annotations_averaged_songs_1_2000.csv`` and the
last ~15 % numbered from 2001 in ``..._2000_2058.csv``, the published test part.

The targets *cause* the music, by the means music psychology names for them (Gabrielsson &
Lindström's review of musical cues; Eerola et al. 2013). Each song draws a valence and an
arousal (independently, so that one cannot stand in for the other), then its musical
parameters from them plus its own noise:

- valence: the mode (major or minor progression and melody; the probability of major rises
  with valence) and the brightness of the timbre (the harmonics roll off more slowly as
  valence rises: dark and bright instruments mixed, and the mix's spectral tilt);
- arousal: the tempo, the loudness, the note density of melody, chords and bass, and how
  busy the drums are (none at the calmest).

The annotation is the song's target plus rater noise (std :data:`ANNOTATION_NOISE`), clipped
to the 1-9 scale, written with one decimal as DEAM's are. The melodies, chords and drums are
rendered by the synthetic GTZAN's helpers (:mod:`datamodules.synthetic`) from its material
(:mod:`datamodules.synthetic_styles`). A song is a pure function of ``(seed, song_id)``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .emotion import DEAM_ANNOTATIONS, DEAM_AUDIO, DEAM_DEV_CSV, DEAM_TEST_CSV, SCALE
from .synthetic import drum_hit, step_times, voice_chord, render_line
from .synthetic_marker import mark_synthetic
from .synthetic_styles import CHORDS, PROGRESSIONS, SCALES

#: The real files' headers. The 2015 file (songs 2001-2058) also has the means and spreads of
#: the raters' maxima and minima.
DEV_HEADER = ("song_id", "valence_mean", "valence_std", "arousal_mean", "arousal_std")
TEST_HEADER = ("song_id", "valence_mean", "valence_std", "valence_max_mean", "valence_max_std", "valence_min_mean",
               "valence_min_std", "arousal_mean", "arousal_std", "arousal_max_mean", "arousal_max_std",
               "arousal_min_mean", "arousal_min_std")
#: Share of the songs in the 2015 (test) file, and DEAM's id ranges.
TEST_SHARE, FIRST_TEST_ID, MAX_DEV_SONGS, MAX_TEST_SONGS = 0.15, 2001, 2000, 58
#: Standard deviation of the annotation around the song's target, in SAM points.
ANNOTATION_NOISE = 0.3
PROGRESSIONS_BY_MODE = {True: ("pop", "country", "classical"), False: ("classical_minor", "reggae", "hiphop")}
SCALES_BY_MODE = {True: ("major", "major_pent"), False: ("minor", "harmonic_minor")}
#: (dark, bright) instruments of the chords and the melody: a song's brightness mixes the two.
TIMBRES = {"chords": ("flute", "strings"), "lead": ("epiano", "pluck")}
#: Spectral tilt of the mix at the darkest and brightest songs, dB per octave.
TILT_DB = 3.0
HEADROOM = np.float32(10 ** (-1 / 20))


@dataclass(frozen=True)
class Recipe:
    """The musical parameters of one song, drawn from its valence and arousal."""

    major: bool
    brightness: float  # 0 (dark instruments, -3 dB/octave) .. 1 (bright ones, +3 dB/octave)
    bpm: float
    density: float  # melody notes per beat
    level_db: float  # RMS level, dBFS
    drums: float  # 0 (none) .. 1 (kick, snare and 16th hats)


def song_targets(song_id: int, seed: int) -> tuple[float, float]:
    """The (valence, arousal) a song is made from: each 1 + 8 x Beta(2.2, 2.2) (mean 5, std 1.6)."""
    rng = np.random.default_rng([seed, song_id, 0])
    return tuple(float(SCALE[0] + (SCALE[1] - SCALE[0]) * rng.beta(2.2, 2.2)) for _ in range(2))


def recipe(valence: float, arousal: float, rng: np.random.Generator) -> Recipe:
    """Musical parameters from the targets (each centred to -1..1 as ``v`` and ``a``) plus per-song
    noise: P(major) = sigmoid(3 v); brightness 0.5 + 0.5 v; tempo 105 + 40 a BPM; melody notes
    per beat 2^(0.5 + 1.1 a); RMS level -22 + 6 a dBFS; drums 0.45 + 0.6 a."""
    v, a = (valence - 5) / 4, (arousal - 5) / 4
    return Recipe(
        major=bool(rng.random() < 1 / (1 + np.exp(-3 * v))),  # P(major) 0.05 at valence 1, 0.95 at 9
        brightness=float(np.clip(0.5 + 0.5 * v + rng.normal(0, 0.06), 0, 1)),
        bpm=float(np.clip(105 + 40 * a + rng.normal(0, 6), 50, 180)),
        density=float(2 ** (0.5 + 1.1 * a + rng.normal(0, 0.2))),
        level_db=float(-22 + 6 * a + rng.normal(0, 1.5)),
        drums=float(np.clip(0.45 + 0.6 * a + rng.normal(0, 0.15), 0, 1)),
    )


class _Song:
    """One song rendered from its recipe: chords, melody, bass and drums on a 16th-note grid."""

    def __init__(self, r: Recipe, n: int, sr: int, rng: np.random.Generator):
        self.r, self.n, self.sr, self.rng = r, n, sr, rng
        self.step = 60.0 / r.bpm / 4 * sr
        self.bars = int(np.ceil(n / (16 * self.step))) + 1
        self.times = step_times(16 * self.bars, self.step, 0.0, sr, rng)
        self.key = int(rng.integers(12))
        prog = PROGRESSIONS[rng.choice(PROGRESSIONS_BY_MODE[r.major])]
        self.chords = [prog[b % len(prog)] for b in range(self.bars)]
        # Chords (and the bass, twice as slow) every 16, 8, 4 or 2 steps as the music gets denser.
        self.every = 16 if r.density < 1 else 8 if r.density < 1.7 else 4 if r.density < 2.8 else 2

    def line(self, notes: list[tuple[int, float, int]], inst: str) -> np.ndarray:
        steps, gates, midi = (np.array(x) for x in zip(*notes))
        keep = steps < len(self.times)
        amps = self.rng.uniform(0.75, 1.0, int(keep.sum())).astype(np.float32)
        return render_line(self.times[steps[keep]], (gates[keep] * self.step).astype(np.int64), midi[keep], amps,
                           self.n, self.sr, inst, self.rng)

    def timbre(self, notes: list[tuple[int, float, int]], part: str) -> np.ndarray:
        """The notes on the part's dark and bright instruments, mixed by the song's brightness:
        the harmonics' amplitudes move from one instrument's roll-off to the other's."""
        dark, bright = (_unit(self.line(notes, inst)) for inst in TIMBRES[part])
        return (1 - self.r.brightness) * dark + self.r.brightness * bright

    def harmony(self) -> np.ndarray:
        voices: dict[int, list] = {}
        for b, (root, quality) in enumerate(self.chords):
            tones = voice_chord([(self.key + root + i) % 12 for i in CHORDS[quality]], 57 + self.key % 5)
            for s in range(0, 16, self.every):
                for j, midi in enumerate(tones):
                    voices.setdefault(j, []).append((16 * b + s, 0.9 * self.every, midi))
        return _unit(sum(self.timbre(notes, "chords") for notes in voices.values()))

    def lead(self) -> np.ndarray:
        """A random walk on the mode's scale, ``density`` notes per beat, more on the 8ths."""
        scale = np.array(SCALES[self.rng.choice(SCALES_BY_MODE[self.r.major])])
        total = 16 * self.bars
        p = np.where(np.arange(total) % 2 == 0, 1.4, 0.6) * self.r.density / 4
        steps = np.flatnonzero(self.rng.random(total) < np.minimum(p, 1.0))
        if len(steps) == 0:
            steps = np.array([0])
        degree = np.abs((np.cumsum(self.rng.choice([-2, -1, -1, 1, 1, 2, 0], len(steps))) + 20) % 28 - 14)
        tonic = 55 + (self.key if self.key <= 6 else self.key - 12)  # D3 .. C#4, and two octaves up from there
        midi = tonic + 12 * (degree // len(scale)) + scale[degree % len(scale)]
        gates = np.diff(np.append(steps, total)) * 0.9
        return self.timbre(list(zip(steps.tolist(), gates.tolist(), midi.tolist())), "lead")

    def bass(self) -> np.ndarray:
        every = min(16, 2 * self.every)
        notes = [(16 * b + s, 0.9 * every, 33 + (self.key + root) % 12)
                 for b, (root, _) in enumerate(self.chords) for s in range(0, 16, every)]
        return _unit(self.line(notes, "bass"))

    def drums(self) -> np.ndarray:
        """Kick on the beats, then snare on 2 and 4, hats on 8ths, then 16ths, as ``drums`` rises."""
        level, out = self.r.drums, np.zeros(self.n + self.sr, np.float32)
        pattern = {"kick": range(0, 16, 4) if level > 0.15 else (),
                   "snare": (4, 12) if level > 0.4 else (),
                   "hat": range(0, 16, 1 if level > 0.7 else 2) if level > 0.25 else ()}
        for inst, steps in pattern.items():
            if not steps:
                continue
            sound = drum_hit(inst, self.sr, self.rng).astype(np.float32)
            for hit in (16 * b + s for b in range(self.bars) for s in steps):
                o = self.times[hit]
                if 0 <= o < self.n:
                    out[o:o + len(sound)] += self.rng.uniform(0.7, 1.0) * sound
        return out[: self.n]

    def tilt(self, x: np.ndarray) -> np.ndarray:
        """The whole mix's spectrum tilted about 1 kHz by the brightness (-/+ :data:`TILT_DB` per
        octave, from 125 Hz to 8 kHz): the harmonics of every part, drums too, roll off faster in
        a dark song, so the drums cannot mask its timbre."""
        f = np.fft.rfftfreq(len(x), 1 / self.sr)
        octaves = np.clip(np.log2(np.maximum(f, 1.0) / 1000), -3, 3)
        gain = 10 ** (TILT_DB * (2 * self.r.brightness - 1) * octaves / 20)
        return np.fft.irfft(np.fft.rfft(x) * gain, len(x)).astype(np.float32)

    def render(self) -> np.ndarray:
        mix = self.harmony() + 0.8 * _unit(self.lead()) + 0.5 * self.bass()
        if self.r.drums > 0.15:  # drums under the harmony, so that they do not mask its timbre
            mix += _unit(self.drums()) * (0.15 + 0.45 * self.r.drums)
        mix = self.tilt(mix)
        mix += 0.002 * self.rng.standard_normal(self.n).astype(np.float32)  # a recording's noise floor
        y = mix * np.float32(10 ** (self.r.level_db / 20) / (np.sqrt(np.mean(mix ** 2)) + 1e-9))
        return (HEADROOM * np.tanh(y / HEADROOM)).astype(np.float32)  # a limiter's soft ceiling at -1 dBFS


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` at unit RMS (silence stays silence)."""
    rms = float(np.sqrt(np.mean(x ** 2)))
    return x / rms if rms > 1e-9 else x


def synth_song(song_id: int, *, seed: int = 0, seconds: float = 45.0,
               sample_rate: int = 44100) -> tuple[np.ndarray, float, float]:
    """(float32 mono audio in [-1, 1], valence, arousal) of one song; a pure function of its arguments."""
    valence, arousal = song_targets(song_id, seed)
    rng = np.random.default_rng([seed, song_id, 1])
    song = _Song(recipe(valence, arousal, rng), int(round(seconds * sample_rate)), sample_rate, rng)
    return song.render(), valence, arousal


def annotation_row(song_id: int, valence: float, arousal: float, seed: int, header: tuple[str, ...]) -> list[str]:
    """A row of the annotation file with ``header``: the targets plus rater noise, clipped to the
    scale; spreads of the ratings as on DEAM (std 0.6-1.9)."""
    rng = np.random.default_rng([seed, song_id, 2])
    values = {"song_id": str(song_id)}
    for name, target in (("valence", valence), ("arousal", arousal)):
        mean = float(np.clip(target + rng.normal(0, ANNOTATION_NOISE), *SCALE))
        values[f"{name}_mean"], values[f"{name}_std"] = mean, rng.uniform(0.6, 1.9)
        values[f"{name}_max_mean"] = float(np.clip(mean + rng.uniform(0.8, 2.0), *SCALE))
        values[f"{name}_min_mean"] = float(np.clip(mean - rng.uniform(0.8, 2.0), *SCALE))
        values[f"{name}_max_std"], values[f"{name}_min_std"] = rng.uniform(0.5, 1.5, 2)
    return [values[c] if c == "song_id" else f"{round(values[c], 1 if c.endswith('mean') else 2):g}" for c in header]


def make_synthetic_deam(
    out: str | Path,
    *,
    n_songs: int = 200,
    seconds: float = 45.0,
    sample_rate: int = 44100,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write a synthetic DEAM under ``out`` and return ``out``.

    ``n_songs`` songs (DEAM's clips are 45 s at 44,100 Hz): the first ones numbered 1, 2, ...
    in the 1-2000 file, the last 15 % (at least one, at most DEAM's 58) numbered from 2001 in
    the 2000-2058 file, which is the test part of DEAM's split. Audio is mono mp3. Songs are
    rendered in ``workers`` threads (default: CPU count; numpy and the mp3 encoder release the
    GIL); the files are the same for any number of workers.
    """
    n_test = min(MAX_TEST_SONGS, max(1, round(TEST_SHARE * n_songs)))
    if not 3 <= n_songs <= MAX_DEV_SONGS + MAX_TEST_SONGS or n_songs - n_test > MAX_DEV_SONGS:
        raise ValueError(f"n_songs must be 3 to {MAX_DEV_SONGS + MAX_TEST_SONGS} (DEAM's id ranges), got {n_songs}")
    if seconds * sample_rate < 1:
        raise ValueError(f"seconds={seconds} at {sample_rate} Hz gives no samples")
    out = Path(out)
    (out / DEAM_AUDIO).mkdir(parents=True, exist_ok=True)
    ids = [*range(1, n_songs - n_test + 1), *range(FIRST_TEST_ID, FIRST_TEST_ID + n_test)]

    def write(song_id: int) -> tuple[float, float]:
        audio, valence, arousal = synth_song(song_id, seed=seed, seconds=seconds, sample_rate=sample_rate)
        sf.write(out / DEAM_AUDIO / f"{song_id}.mp3", audio, sample_rate, format="MP3")
        return valence, arousal

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as executor:
        targets = dict(zip(ids, executor.map(write, ids)))
    folder = out / DEAM_ANNOTATIONS
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, chosen in ((DEAM_DEV_CSV, DEV_HEADER, [i for i in ids if i < FIRST_TEST_ID]),
                                 (DEAM_TEST_CSV, TEST_HEADER, [i for i in ids if i >= FIRST_TEST_ID])):
        rows = [", ".join(header)] + [",".join(annotation_row(i, *targets[i], seed, header)) for i in chosen]
        (folder / name).write_text("\n".join(rows) + "\n")
    mark_synthetic(out, f"Synthetic DEAM (musiczoo, seed {seed}, {n_songs} songs of {seconds:g} s at {sample_rate} Hz)")
    return out
