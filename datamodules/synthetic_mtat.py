"""Synthetic MagnaTagATune releases, written in the real on-disk format.

Tests and smoke runs cannot download MTAT, so this writes a small release that a loader
cannot tell apart from the real one by layout: mp3 files in folders ``0``..``f`` with MTAT
names, ``annotations_final.csv`` with the real quoting and 190 columns, and a few empty or
truncated mp3 files that are still listed in the annotations (as on the real release).

Clip ids and paths are taken from the shipped top-50 split, so loaders use the real split
files on synthetic data. The tags are *caused by the audio*: each clip is rendered from a
style (instruments, drums, voice, tempo, loudness) and tagged from that recipe, then the
tags get MTAT-like noise (many true tags missing, a few spurious ones). A model on log-Mel
features can therefore learn the tags, but not perfectly.

Everything is deterministic in ``seed``: each clip has its own generator seeded by
``(seed, clip_id)``, so a clip does not change when other clips are added or removed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from datamodules.mtat_format import ANNOTATIONS_FILE, MTAT_TAGS, load_top50_split, top50_tags
from datamodules.synthetic_marker import mark_synthetic

TWO_PI = np.float32(2 * np.pi)
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# Probability that a true tag is kept / that any other tag is switched on. MTAT labels are
# crowd-sourced and very incomplete (missing tags dominate), hence the asymmetry.
KEEP_P = 0.75
KEEP_P_NEGATIVE = 0.4  # "no vocals" & co. were applied even more sparsely
SPURIOUS_P = 0.004
LEVEL_DBFS = {"loud": -12.0, "mid": -21.0, "quiet": -32.0}
HEADROOM = np.float32(10 ** (-1 / 20))
# Vowel formants (Hz, bandwidth Hz) for an adult male voice; female voices scale by 1.17.
VOWELS = np.array([
    [(730, 90), (1090, 110), (2440, 160)],  # a
    [(530, 70), (1840, 100), (2480, 160)],  # e
    [(270, 60), (2290, 100), (3010, 170)],  # i
    [(570, 80), (840, 90), (2410, 160)],  # o
    [(300, 60), (870, 90), (2240, 160)],  # u
], dtype=np.float32)
UNSPLIT_CLIP_ID_START = 60000  # above every real MTAT clip_id (max 58915): no clash with the split


# ----------------------------------------------------------------------------------------------
# Sound sources. Each takes the clip context and returns a float32 signal (any scale); all are
# vectorised over samples, looping only over a handful of harmonics.
# ----------------------------------------------------------------------------------------------
@dataclass
class _Clip:
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


def _plucked(c: _Clip, period, freqs, decay, n_harm, tilt, glide=0.0, inharm=0.0) -> np.ndarray:
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


def _tone(c: _Clip, f: np.ndarray, amps: Sequence[float], odd_only=False, vibrato=(5.5, 0.0)) -> np.ndarray:
    """Sustained periodic tone with a per-sample frequency (bowed strings, flute, synths)."""
    rate, depth = vibrato
    f = f * (1 + np.float32(depth) * np.sin(TWO_PI * rate * c.t)) if depth else f
    phase = np.mod(np.cumsum(f, dtype=np.float64) * (2 * np.pi / c.sr), 2 * np.pi).astype(np.float32)
    y = np.zeros_like(c.t)
    for i, a in enumerate(amps):
        h = 2 * i + 1 if odd_only else i + 1
        y += a * np.sin(h * phase) * (h * f < 0.45 * c.sr)
    return y


def _note_env(c: _Clip, period: float, attack: float, release: float) -> np.ndarray:
    """Per-note attack/release envelope so that sustained lines are heard as separate notes."""
    _, tr = _grid(c.t, period)
    return np.minimum(1, tr / attack) * np.clip((period - tr) / release, 0, 1)


def _sustained_line(c: _Clip, period, octave, amps, attack, odd_only=False, vibrato=(5.5, 0.0)) -> np.ndarray:
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


VOICES: dict[str, Callable[[_Clip], np.ndarray]] = {
    "male": lambda c: _voice(c, female=False, octave=-0.5),
    "female": lambda c: _voice(c, female=True, octave=0.5),
    "opera": lambda c: _voice(c, female=True, octave=0.75, vibrato=(6.0, 0.04), period=2 * c.beat),
    "choir": lambda c: _voice(c, female=False, octave=-0.5, vibrato=(5.0, 0.01), period=4 * c.beat, n_voices=4),
}
SOURCES: dict[str, Callable[[_Clip], np.ndarray]] = {
    "guitar": _guitar, "harpsichord": _harpsichord, "piano": _piano, "harp": _harp,
    "strings": _strings, "cello": _cello, "flute": _flute, "sitar": _sitar,
    "synth_pad": _synth_pad, "synth_square": _synth_square, "drums": _drums,
    "double_kick": _double_kick, "distorted_guitar": _distorted_guitar,
    "metal_guitar": _metal_guitar, "weird": _weird, **VOICES,
}


# ----------------------------------------------------------------------------------------------
# Styles: what is rendered, and the tags that recipe implies.
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    """A recipe: sound sources (keys of SOURCES) and the tags a listener would give them."""

    sources: tuple[str, ...]
    tags: tuple[str, ...]  # top-50 tags implied by the instruments/genre
    extra: tuple[str, ...] = ()  # implied tags outside the top 50 (the other 138 columns)
    bpm: tuple[int, int] = (60, 140)
    levels: tuple[float, float, float] = (0.2, 0.5, 0.3)  # P(loud), P(mid), P(quiet)
    voices: tuple[tuple[str, float], ...] = (("none", 1.0),)


# Voices, tempo and loudness are drawn per clip and add their own tags (tables below).
STYLES: dict[str, Style] = {
    "baroque": Style(
        ("harpsichord",), ("harpsichord", "classical", "classic"), ("baroque", "harpsicord", "clasical"),
        levels=(0, 0.6, 0.4)),
    "string_ensemble": Style(
        ("strings",), ("strings", "violin", "classical", "classic"), ("violins", "orchestral", "string"),
        bpm=(50, 120), levels=(0.1, 0.4, 0.5)),
    "cello": Style(
        ("cello",), ("cello", "strings", "classical", "solo"), ("string", "low", "deep"),
        bpm=(45, 90), levels=(0, 0.5, 0.5)),
    "piano": Style(
        ("piano",), ("piano", "classical", "solo"), ("piano solo", "keyboard"),
        bpm=(50, 150), levels=(0.1, 0.5, 0.4)),
    "guitar": Style(
        ("guitar",), ("guitar", "solo"), ("acoustic guitar", "classical guitar", "acoustic", "plucking"),
        levels=(0, 0.5, 0.5)),
    "flute": Style(
        ("flute",), ("flute", "classical"), ("flutes", "woodwind", "wind"),
        bpm=(50, 120), levels=(0, 0.4, 0.6)),
    "harp": Style(
        ("harp",), ("harp", "classical"), ("plucking", "light"),
        bpm=(50, 110), levels=(0, 0.4, 0.6)),
    "indian": Style(
        ("sitar",), ("sitar", "indian"), ("india", "eastern", "drone", "oriental"),
        levels=(0.1, 0.6, 0.3)),
    "opera": Style(
        ("strings",), ("opera", "classical", "strings"), ("operatic", "soprano", "female opera", "orchestra"),
        bpm=(50, 100), levels=(0.4, 0.5, 0.1), voices=(("opera", 1.0),)),
    "choir": Style(
        (), ("choir", "choral", "classical"), ("chorus", "chant", "voices", "monks"),
        bpm=(50, 90), levels=(0.1, 0.5, 0.4), voices=(("choir", 1.0),)),
    "ambient": Style(
        ("synth_pad",), ("ambient", "new age", "synth", "electronic"), ("airy", "space", "spacey", "calm"),
        bpm=(45, 75), levels=(0, 0.3, 0.7)),
    "techno": Style(
        ("synth_square", "drums"), ("techno", "electronic", "synth", "beat", "beats", "drums", "dance"),
        ("electro", "trance", "house", "fast beat"), bpm=(125, 160), levels=(0.7, 0.3, 0)),
    "rock": Style(
        ("distorted_guitar", "drums"), ("rock", "guitar", "drums", "beat"), ("electric guitar", "hard rock", "electric"),
        bpm=(90, 150), levels=(0.7, 0.3, 0), voices=(("male", 0.6), ("none", 0.4))),
    "metal": Style(
        ("metal_guitar", "double_kick"), ("metal", "rock", "guitar", "drums"), ("heavy metal", "heavy", "hard rock", "hard"),
        bpm=(130, 180), levels=(0.9, 0.1, 0), voices=(("male", 0.5), ("none", 0.5))),
    "pop": Style(
        ("piano", "drums"), ("pop", "beat", "drums", "piano"), ("upbeat", "happy"),
        bpm=(90, 130), levels=(0.4, 0.6, 0), voices=(("female", 0.6), ("male", 0.4))),
    "dance": Style(
        ("synth_square", "drums"), ("dance", "pop", "electronic", "synth", "beat", "beats"), ("disco", "house", "upbeat"),
        bpm=(115, 135), levels=(0.6, 0.4, 0), voices=(("female", 0.7), ("none", 0.3))),
    "country": Style(
        ("guitar", "drums"), ("country", "guitar"), ("banjo", "folk", "acoustic"),
        bpm=(80, 130), levels=(0.2, 0.7, 0.1), voices=(("male", 0.8), ("none", 0.2))),
    "weird": Style(
        ("weird",), ("weird", "electronic"), ("strange", "noise", "eerie", "different"),
        levels=(0.3, 0.5, 0.2)),
}
_SUNG = ("vocal", "vocals", "singing", "voice")
VOICE_TAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # voice -> (top-50 tags, other tags)
    "none": (("no vocals", "no vocal", "no voice"), ("instrumental", "no singing", "no voices", "no singer")),
    "male": (_SUNG + ("male", "man", "male vocal", "male voice"), ("male singer", "man singing", "male vocals", "singer", "men")),
    "female": (
        _SUNG + ("female", "woman", "female vocal", "female voice"),
        ("female singer", "woman singing", "female vocals", "female singing", "girl", "women", "singer"),
    ),
    "choir": (_SUNG, ("voices", "chanting")),
}
VOICE_TAGS["opera"] = VOICE_TAGS["female"]
TEMPO_TAGS = {"fast": (("fast",), ("quick",)), "slow": (("slow",), ("calm",))}
LEVEL_TAGS = {"loud": (("loud",), ()), "quiet": (("quiet", "soft"), ("mellow",))}


def _render(clip_id: int, seed: int, seconds: float, sr: int) -> tuple[np.ndarray, set[str]]:
    """Render one clip; return (audio float32 in [-1, 1], the tags its recipe implies)."""
    rng = np.random.default_rng([seed, clip_id])
    style = STYLES[list(STYLES)[rng.integers(len(STYLES))]]
    bpm = rng.uniform(*style.bpm)
    level = rng.choice(["loud", "mid", "quiet"], p=style.levels)
    voice = rng.choice([v for v, _ in style.voices], p=[p for _, p in style.voices])
    c = _Clip(
        t=np.arange(int(round(seconds * sr)), dtype=np.float32) / np.float32(sr),
        sr=sr, rng=rng, beat=60.0 / bpm, root=float(rng.uniform(110, 220)),
        scale=MAJOR if rng.random() < 0.5 else MINOR,
    )
    y = np.zeros_like(c.t)
    for name in style.sources + ((voice,) if voice != "none" else ()):
        part = SOURCES[name](c)
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
    top = np.isin(MTAT_TAGS, top50_tags())
    if not in_split:
        row &= ~top  # clips outside the top-50 split are those without any top-50 tag
    elif not row[top].any():  # the split only holds clips with at least one top-50 tag
        row[np.flatnonzero(true & top)[:1]] = True
    return row.astype(np.uint8)


def _default_clips(rng: np.random.Generator, n_clips: int) -> list[tuple[int, str]]:
    """Sample split entries: 60% train, 15% valid, 25% test (eval sets big enough to score)."""
    n_valid, n_test = round(0.15 * n_clips), round(0.25 * n_clips)
    chosen = []
    for name, n in (("train", n_clips - n_valid - n_test), ("valid", n_valid), ("test", n_test)):
        entries = load_top50_split(name)
        chosen += [entries[i] for i in np.sort(rng.choice(len(entries), n, replace=False))]
    return chosen


def _resolve(clip_ids: Sequence[int | tuple[int, str]]) -> list[tuple[int, str]]:
    """Accept split entries as given, or bare clip ids looked up in the shipped split."""
    known = {cid: p for name in ("train", "valid", "test") for cid, p in load_top50_split(name)}
    out = []
    for entry in clip_ids:
        if isinstance(entry, (tuple, list)):
            out.append((int(entry[0]), str(entry[1])))
        elif int(entry) in known:
            out.append((int(entry), known[int(entry)]))
        else:
            raise ValueError(f"clip_id {entry} is not in the shipped MTAT top-50 split; pass (clip_id, mp3_path)")
    return out


def make_synthetic_mtat(
    out: str | Path,
    *,
    seed: int = 0,
    n_clips: int = 200,
    seconds: float = 29.1,
    sample_rate: int = 16000,
    n_broken: int = 3,
    clip_ids: Sequence[int | tuple[int, str]] | None = None,
    n_unsplit: int = 4,
    workers: int | None = None,
) -> Path:
    """Write a synthetic MTAT release under ``out`` and return ``out``.

    * ``clip_ids=None``: ``n_clips`` entries sampled (by ``seed``) from the shipped top-50
      split, 60/15/25 % train/valid/test. Otherwise exactly these clips: ``(clip_id, mp3_path)``
      pairs, e.g. ``load_top50_split("train")[:40]``, or bare clip ids from the shipped split.
      Clips given as pairs are treated as split clips (at least one top-50 tag).
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
    clips = _default_clips(rng, n_clips) if clip_ids is None else _resolve(clip_ids)
    if len({c for c, _ in clips}) != len(clips) or len({p for _, p in clips}) != len(clips):
        raise ValueError("clip_ids contain duplicate clip ids or paths")
    in_split = {cid for cid, _ in clips}
    for j in range(n_unsplit):
        folder = "0123456789abcdef"[rng.integers(16)]
        start = 29 * int(rng.integers(0, 10))
        name = f"synthetic_artist_{j:02d}-synthetic_album-01-study_{j:02d}-{start}-{start + 29}.mp3"
        clips.append((UNSPLIT_CLIP_ID_START + j, f"{folder}/{name}"))
    clips.sort()
    train = {cid for cid, _ in load_top50_split("train")} & in_split
    candidates = sorted(train) if len(train) >= n_broken else sorted(in_split)
    broken = [int(x) for x in rng.choice(candidates, min(n_broken, len(candidates)), replace=False)]

    def write(entry: tuple[int, str]) -> np.ndarray:
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
    mark_synthetic(out, f"Synthetic MagnaTagATune (musiczoo, seed {seed}, {seconds:g} s clips at {sample_rate} Hz)")
    return out
