"""The synthetic MagnaTagATune's sound sources: instruments, drums, voices, rendered additively.

Each source takes a :class:`RenderContext` (the clip's time axis, tempo, key and generator)
and returns a float32 signal at any scale; all are vectorised over samples, looping only
over a handful of harmonics. :data:`SOUND_SOURCES` names them for the styles of
:mod:`datamodules.synthetic_mtat_styles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

TWO_PI = np.float32(2 * np.pi)
# Vowel formants (Hz, bandwidth Hz) for an adult male voice; female voices scale by 1.17.
VOWELS = np.array([
    [(730, 90), (1090, 110), (2440, 160)],  # a
    [(530, 70), (1840, 100), (2480, 160)],  # e
    [(270, 60), (2290, 100), (3010, 170)],  # i
    [(570, 80), (840, 90), (2410, 160)],  # o
    [(300, 60), (870, 90), (2240, 160)],  # u
], dtype=np.float32)


@dataclass
class RenderContext:
    """What every sound source of one clip shares: its time axis, tempo, key and generator."""

    t: np.ndarray  # float32 seconds
    sr: int
    rng: np.random.Generator
    beat: float  # seconds per beat
    root: float  # Hz
    scale: np.ndarray

    def melody(self, period: float, octave: float = 0.0, degrees: np.ndarray | None = None) -> np.ndarray:
        """One frequency per event of length ``period`` (random scale degrees around the root)."""
        n = int(self.t[-1] // period) + 2
        deg = self.rng.integers(0, 8, n) if degrees is None else np.resize(degrees, n)
        semis = self.scale[deg % 7] + 12 * (deg // 7) + 12 * octave
        return (self.root * 2.0 ** (semis / 12)).astype(np.float32)


def _grid(t: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Event index and time since the event onset, per sample, for a regular grid."""
    idx = (t // period).astype(np.int64)
    return idx, t - idx.astype(np.float32) * np.float32(period)


def _plucked(c: RenderContext, period, freqs, decay, n_harm, tilt, glide=0.0, inharm=0.0) -> np.ndarray:
    """Struck/plucked notes: decaying harmonics, upper ones decaying faster (guitar, piano...)."""
    idx, tr = _grid(c.t, period)
    f0 = freqs[idx]
    # Optional upward pitch glide after the pluck (sitar's curved bridge): integrated phase.
    warp = tr + glide * (tr - (1 - np.exp(-8 * tr)) / 8) if glide else tr
    y = np.zeros_like(c.t)
    for h in range(1, n_harm + 1):
        fh = f0 * h * np.float32(np.sqrt(1 + inharm * h * h))
        y += (tilt ** (h - 1)) * np.sin(TWO_PI * fh * warp) * np.exp(-decay * (1 + 0.3 * (h - 1)) * tr) * (fh < 0.45 * c.sr)
    return y


def _tone(c: RenderContext, f: np.ndarray, amps: Sequence[float], odd_only=False, vibrato=(5.5, 0.0)) -> np.ndarray:
    """Sustained periodic tone with a per-sample frequency (bowed strings, flute, synths)."""
    rate, depth = vibrato
    f = f * (1 + np.float32(depth) * np.sin(TWO_PI * rate * c.t)) if depth else f
    phase = np.mod(np.cumsum(f, dtype=np.float64) * (2 * np.pi / c.sr), 2 * np.pi).astype(np.float32)
    y = np.zeros_like(c.t)
    for i, a in enumerate(amps):
        h = 2 * i + 1 if odd_only else i + 1
        y += a * np.sin(h * phase) * (h * f < 0.45 * c.sr)
    return y


def _note_env(c: RenderContext, period: float, attack: float, release: float) -> np.ndarray:
    """Per-note attack/release envelope so that sustained lines are heard as separate notes."""
    _, tr = _grid(c.t, period)
    return np.minimum(1, tr / attack) * np.clip((period - tr) / release, 0, 1)


def _sustained_line(c: RenderContext, period, octave, amps, attack, odd_only=False, vibrato=(5.5, 0.0)) -> np.ndarray:
    idx, _ = _grid(c.t, period)
    f = c.melody(period, octave)[idx]
    return _tone(c, f, amps, odd_only, vibrato) * _note_env(c, period, attack, min(0.1, period / 4))


SAW = [1 / h for h in range(1, 11)]


def _guitar(c):
    return _plucked(c, c.beat / 2, c.melody(c.beat / 2, 0), decay=3.0, n_harm=8, tilt=0.6)


def _harpsichord(c):
    return _plucked(c, c.beat / 4, c.melody(c.beat / 4, 1), decay=5.0, n_harm=14, tilt=0.85)


def _piano(c):
    lo = _plucked(c, c.beat, c.melody(c.beat, -1), decay=1.2, n_harm=7, tilt=0.5, inharm=2e-4)
    hi = _plucked(c, c.beat / 2, c.melody(c.beat / 2, 1), decay=2.0, n_harm=7, tilt=0.45, inharm=2e-4)
    return lo + hi


def _harp(c):
    arpeggio = np.array([0, 2, 4, 7, 9, 11, 14, 11, 9, 7, 4, 2])  # chord tones up and down
    return _plucked(c, c.beat / 4, c.melody(c.beat / 4, 0, arpeggio), decay=2.5, n_harm=3, tilt=0.3)


def _strings(c):
    return _sustained_line(c, 2 * c.beat, 1, SAW, attack=0.15, vibrato=(5.5, 0.006)) + 0.7 * _sustained_line(
        c, 4 * c.beat, 0, SAW, attack=0.3, vibrato=(5.0, 0.004)
    )


def _cello(c):
    return _sustained_line(c, 2 * c.beat, -1, SAW, attack=0.2, vibrato=(5.0, 0.006))


def _flute(c):
    tone = _sustained_line(c, c.beat, 1.5, [1.0, 0.25, 0.08], attack=0.06, vibrato=(5.0, 0.008))
    breath = c.rng.standard_normal(len(c.t), dtype=np.float32) * 0.05 * (np.abs(tone) > 0.05)
    return tone + breath


def _sitar(c):
    pluck = _plucked(c, c.beat / 2, c.melody(c.beat / 2, 0.5), decay=2.0, n_harm=16, tilt=0.9, glide=0.03)
    drone_f = np.full_like(c.t, c.root / 2)
    drone = _tone(c, drone_f, [0.8 ** h for h in range(12)]) + _tone(c, drone_f * 1.5, [0.8 ** h for h in range(8)])
    return pluck + 0.5 * drone


def _synth_pad(c):
    idx, _ = _grid(c.t, 4 * c.beat)
    f = c.melody(4 * c.beat, 0)[idx]
    pad = sum(_tone(c, f * np.float32(d), SAW[:6]) for d in (0.993, 1.0, 1.007))
    return pad * _note_env(c, 4 * c.beat, attack=c.beat, release=c.beat)


def _synth_square(c):
    lead = _sustained_line(c, c.beat / 2, 1, [1, 1 / 3, 1 / 5, 1 / 7, 1 / 9], attack=0.005, odd_only=True)
    bass = _sustained_line(c, c.beat, -1, [1, 1 / 3, 1 / 5, 1 / 7], attack=0.005, odd_only=True)
    return lead + bass


def _drums(c, kicks_per_beat=1):
    noise = c.rng.standard_normal(len(c.t), dtype=np.float32)
    hiss = np.diff(noise, prepend=np.float32(0))  # crude high-pass for cymbals
    _, tk = _grid(c.t, c.beat / kicks_per_beat)
    kick = np.sin(TWO_PI * (50 * tk + 80 / 30 * (1 - np.exp(-30 * tk)))) * np.exp(-10 * tk)
    beat_idx, tb = _grid(c.t, c.beat)
    snare = (noise * 0.7 + np.sin(TWO_PI * 185 * tb)) * np.exp(-18 * tb) * (beat_idx % 2 == 1)
    _, t8 = _grid(c.t, c.beat / 2)
    hat = hiss * np.exp(-60 * t8) * 0.5
    return kick + snare + hat


def _double_kick(c):
    return _drums(c, kicks_per_beat=4)


def _distorted_guitar(c, period=None, gain=6.0, decay=1.0):
    period = period or c.beat
    f = c.melody(period, -1, np.array([0, 0, 3, 4, 0, 5, 4, 3]))
    chord = _plucked(c, period, f, decay, n_harm=10, tilt=0.7) + _plucked(c, period, f * 1.5, decay, n_harm=10, tilt=0.7)
    return np.tanh(gain * chord / (np.abs(chord).max() + 1e-6))


def _metal_guitar(c):
    return _distorted_guitar(c, c.beat / 4, gain=25.0, decay=6.0)


def _voice(c, *, female: bool, octave: float, vibrato=(5.5, 0.015), period=None, n_voices=1) -> np.ndarray:
    """Sung vowels: a harmonic source shaped by vowel formants (one vowel per note).

    Additive synthesis lets each harmonic take the formant filter's gain at its own
    frequency, which is what makes the sound voice-like, without any IIR filtering.
    Harmonic h is Im(z**h) with z = exp(i*phase), built by repeated multiplication,
    which is much cheaper than one sin() per harmonic. Choir voices stack half an
    octave apart.
    """
    period = period or c.beat
    idx, tr = _grid(c.t, period)
    n_notes = int(idx[-1]) + 1
    syllable = np.sqrt(np.abs(np.sin(np.pi * np.clip(tr / (0.9 * period), 0, 1))))  # gap between syllables
    y = np.zeros_like(c.t)
    for v in range(n_voices):
        f_notes = c.melody(period, octave + 0.5 * v)[:n_notes]
        vowels = VOWELS[c.rng.integers(0, len(VOWELS), n_notes)] * np.float32(1.17 if female else 1.0)
        k = np.arange(1, int(3500 / f_notes.min()) + 1, dtype=np.float32)
        fk = f_notes[:, None] * k  # (notes, harmonics)
        formant, bw = vowels[:, None, :, 0], vowels[:, None, :, 1]
        gain = (1 / (1 + ((fk[..., None] - formant) / bw) ** 2)).sum(-1) / np.sqrt(k) * (fk < 0.45 * c.sr)
        gain = np.ascontiguousarray(gain.T)  # (harmonics, notes): one row gathered per harmonic
        f = f_notes[idx] * (1 + np.float32(vibrato[1]) * np.sin(TWO_PI * vibrato[0] * c.t + v))
        phase = np.cumsum(f, dtype=np.float64) * (2 * np.pi / c.sr)
        z = np.exp(1j * phase).astype(np.complex64)
        zh = z.copy()
        for g in gain:
            if g.max() > 0.02 * gain.max():
                y += g[idx] * zh.imag
            zh *= z
    return y * syllable


def _weird(c):
    """Exponential chirps between random pitches, ring-modulated, with gated noise bursts."""
    idx, tr = _grid(c.t, c.beat / 2)
    n = int(idx[-1]) + 1
    f0, f1 = (c.rng.uniform(80, 3000, n).astype(np.float32) for _ in range(2))
    f = f0[idx] * (f1[idx] / f0[idx]) ** (tr / np.float32(c.beat / 2))
    chirp = _tone(c, f, [1.0, 0.5])
    ring = np.sin(TWO_PI * np.float32(c.rng.uniform(20, 200)) * c.t)
    gate = c.rng.random(n).astype(np.float32)[idx] < 0.4
    return chirp * ring + 0.5 * c.rng.standard_normal(len(c.t), dtype=np.float32) * gate


VOICES: dict[str, Callable[[RenderContext], np.ndarray]] = {
    "male": lambda c: _voice(c, female=False, octave=-0.5),
    "female": lambda c: _voice(c, female=True, octave=0.5),
    "opera": lambda c: _voice(c, female=True, octave=0.75, vibrato=(6.0, 0.04), period=2 * c.beat),
    "choir": lambda c: _voice(c, female=False, octave=-0.5, vibrato=(5.0, 0.01), period=4 * c.beat, n_voices=4),
}
SOUND_SOURCES: dict[str, Callable[[RenderContext], np.ndarray]] = {
    "guitar": _guitar, "harpsichord": _harpsichord, "piano": _piano, "harp": _harp,
    "strings": _strings, "cello": _cello, "flute": _flute, "sitar": _sitar,
    "synth_pad": _synth_pad, "synth_square": _synth_square, "drums": _drums,
    "double_kick": _double_kick, "distorted_guitar": _distorted_guitar,
    "metal_guitar": _metal_guitar, "weird": _weird, **VOICES,
}
