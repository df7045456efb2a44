"""A synthetic stand-in for GTZAN: same layout and file names, music that differs by genre.

Tests and smoke runs need data with the real on-disk shape that a model can learn but that
is not trivially separable. Each clip is rendered from a genre *style*: tempo and swing,
a drum pattern and kit, a bass line, a chord progression with a comping rhythm and an
instrument, a melody (scale, note density, instrument), distortion and room. Neighbouring
genres share parts of their styles, each part of a clip is borrowed from a neighbour with
some probability, and every clip gets its own key, tempo, mix, equalisation, reverb and
noise. So the average timbre (clip-mean MFCCs) overlaps between genres while rhythm and
harmony over time still tell them apart.

The styles and the material they draw from (scales, chords, drum patterns, instruments)
are data in :mod:`datamodules.synthetic_styles`. Everything is vectorised numpy: a
monophonic line is one wavetable lookup over the clip, drums are pre-rendered one-shots
added at their onsets, equalisation, reverb and noise are one FFT round trip. A clip is a
pure function of ``(seed, genre, index)``, so the same arguments write the same bytes, and a
clip does not depend on how many others are written.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import soundfile as sf

from .gtzan import GENRES
from .split_lists import LISTED_SPLITS, lists_folder, split_file_name, write_split_list
from .synthetic_marker import mark_synthetic
from .synthetic_styles import (
    CHORDS,
    COMPS,
    DRUMS,
    GENRE_STYLES,
    INSTRUMENTS,
    PARTS,
    PROGRESSIONS,
    SCALES,
)

TABLE_SIZE = 2048
BORROW = 0.1  # probability that one part of a clip's style comes from a neighbouring genre
# Per-clip "recording": +-dB/octave of spectral tilt around the genre's, +-dB of one resonance,
# and the range of the low cut (Hz). These spread each genre's average timbre.
TILT_DB, RESONANCE_DB, LOW_CUT = 0.75, 3.0, (20, 100)


def _tables() -> dict[str, np.ndarray]:
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE
    tables = {}
    for name, (harmonics, _) in INSTRUMENTS.items():
        wave = sum(a * np.sin(2 * np.pi * h * phase) for h, a in enumerate(harmonics, start=1))
        tables[name] = (wave / np.abs(wave).max()).astype(np.float32)
    return tables


_TABLES = _tables()


def _midi_hz(midi) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69) / 12)


def render_line(onsets, durations, midi, amps, n: int, sr: int, inst: str, rng) -> np.ndarray:
    """One monophonic line: notes (sample onsets, sample durations, MIDI pitch, amplitude).

    A note lasts until its duration or the next onset, whichever is first. The whole line is
    one vectorised wavetable lookup: each note starts at phase 0 (as a struck or plucked
    note does), and vibrato is phase modulation, so no running phase sum is needed.
    """
    out = np.zeros(n, np.float32)
    keep = (onsets >= 0) & (onsets < n)
    onsets, durations, midi, amps = onsets[keep], durations[keep], np.asarray(midi)[keep], amps[keep]
    if len(onsets) == 0:
        return out
    order = np.argsort(onsets, kind="stable")
    onsets, durations, midi, amps = onsets[order], durations[order], midi[order], amps[order]
    start = onsets[0]
    seg = np.diff(np.append(onsets, n))
    note = np.repeat(np.arange(len(onsets)), seg)  # note index of every sample from the first onset
    dt = np.arange(n - start, dtype=np.float32) - (onsets - start).astype(np.float32)[note]
    attack, decay, vibrato = INSTRUMENTS[inst][1]
    freq = _midi_hz(midi).astype(np.float32)[note]
    cycles = freq * (dt / sr)
    if vibrato:
        rate = rng.uniform(4.5, 6.5)
        # Frequency deviation of `vibrato` semitones at `rate` Hz, as phase modulation.
        cycles += freq * (vibrato * np.log(2) / 12 / (2 * np.pi * rate)) * np.sin(
            np.arange(start, n, dtype=np.float32) * np.float32(2 * np.pi * rate / sr))
    wave = _TABLES[inst][(cycles * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)]
    gate = np.minimum(durations, seg).astype(np.float32)[note]
    env = np.minimum(dt * np.float32(1 / (attack * sr)), 1.0) * np.clip((gate - dt) * np.float32(100 / sr), 0.0, 1.0)
    if decay is not None:
        env *= np.exp(dt * np.float32(-1 / (decay * sr)))
    out[start:] = wave * env * amps.astype(np.float32)[note]
    return out


def drum_hit(name: str, sr: int, rng) -> np.ndarray:
    """One sound of this clip's drum kit, with random tuning and decay."""
    def t(seconds):
        return np.arange(int(seconds * sr), dtype=np.float32) / sr

    def hp_noise(m):  # first difference of white noise: hiss without rumble
        return np.diff(rng.standard_normal(m + 1).astype(np.float32)) / 2

    if name == "kick":  # a sine swept down from 4x its pitch
        x, f0 = t(0.5), rng.uniform(42, 65)
        return np.sin(2 * np.pi * np.cumsum(f0 + 3 * f0 * np.exp(-x / 0.03)) / sr) * np.exp(-x / rng.uniform(0.12, 0.4))
    if name == "snare":
        x = t(0.35)
        return (0.5 * np.sin(2 * np.pi * rng.uniform(170, 250) * x) * np.exp(-x / 0.05)
                + hp_noise(len(x)) * np.exp(-x / rng.uniform(0.06, 0.15)))
    if name == "clap":  # three quick bursts and a tail
        x = t(0.3)
        bursts = sum(np.exp(-np.maximum(x - k * 0.011, 0) / 0.008) * (x >= k * 0.011) for k in range(3))
        return hp_noise(len(x)) * (bursts + 0.6 * np.exp(-x / 0.09))
    if name in ("hat", "open"):
        x = t(0.4)
        decay = rng.uniform(0.02, 0.05) if name == "hat" else rng.uniform(0.15, 0.3)
        return hp_noise(len(x)) * np.exp(-x / decay) * 0.6
    if name == "ride":  # inharmonic partials ringing long
        x = t(0.8)
        partials = np.sin(2 * np.pi * rng.uniform(2500, 8000, 6)[:, None].astype(np.float32) * x).sum(0) / 6
        return (partials + 0.3 * hp_noise(len(x))) * np.exp(-x / 0.5) * 0.7
    if name == "rim":
        x = t(0.1)
        return (np.sin(2 * np.pi * rng.uniform(1500, 2000) * x) + 0.5 * hp_noise(len(x))) * np.exp(-x / 0.012)
    if name == "brush":  # soft, dull swish
        x = t(0.25)
        walk = np.cumsum(rng.standard_normal(len(x)))
        return (walk - np.convolve(walk, np.ones(16) / 16, "same")) * 0.2 * np.exp(-x / 0.07)
    raise ValueError(f"unknown drum {name!r}")


def step_times(n_steps: int, step: float, swing: float, sr: int, rng) -> np.ndarray:
    """Sample onset of each 16th step: swung off-beat 8ths plus a few ms of human timing."""
    s = np.arange(n_steps)
    times = s * step + (s % 4 == 2) * swing * step + rng.normal(0, 0.004 * sr, n_steps)
    return np.rint(times).astype(np.int64)


def voice_chord(tones: list[int], center: float) -> list[int]:
    """MIDI notes of a chord's pitch classes placed near ``center`` (cheap voice leading)."""
    return sorted(int(pc + 12 * np.round((center - pc) / 12)) for pc in tones)


class _Arrangement:
    """The arrangement of one clip: draws its style (each part possibly from a neighbouring genre), key, tempo,
    swing and chord sequence, then renders drums, bass, chords and melody on a shared grid."""

    def __init__(self, genre: str, sr: int, n: int, rng):
        self.sr, self.n, self.rng = sr, n, rng
        self.style = {}
        for fields in PARTS.values():
            source = genre
            if rng.random() < BORROW:
                source = rng.choice(GENRE_STYLES[genre]["neighbours"])
            for f in fields:
                self.style[f] = GENRE_STYLES[source][f]
        self.key = int(rng.integers(12))
        self.bpm = rng.uniform(*self.style["tempo"])
        self.step = 60.0 / self.bpm / 4 * sr
        self.swing = rng.uniform(*self.style["swing"])
        self.bars = int(np.ceil(n / (16 * self.step))) + 2
        self.shift = int(rng.integers(16 * 2))  # start anywhere in the first two bars
        self.times = step_times(16 * self.bars, self.step, self.swing, sr, rng) - int(self.shift * self.step)
        prog = PROGRESSIONS[self.pick("prog")]
        first = int(rng.integers(len(prog)))
        self.chords = [prog[(first + b) % len(prog)] for b in range(self.bars)]

    def pick(self, field):
        """One of a style's choices; earlier ones are more typical (weights 1, 1/2, 1/3, ...)."""
        weights = 1.0 / np.arange(1, len(self.style[field]) + 1)
        return self.style[field][self.rng.choice(len(weights), p=weights / weights.sum())]

    def _line(self, steps, gates, midi, inst):
        """Render notes given on the step grid (gates in steps), with random velocities."""
        onsets = self.times[np.asarray(steps, dtype=np.int64)]
        durations = (np.asarray(gates) * self.step).astype(np.int64)
        amps = self.rng.uniform(0.75, 1.0, len(onsets)).astype(np.float32)
        return render_line(onsets, durations, midi, amps, self.n, self.sr, inst, self.rng)

    def drums(self) -> np.ndarray:
        """A drum pattern, humanised: velocities vary and a few hits are dropped."""
        out = np.zeros(self.n + self.sr, np.float32)
        for inst, pattern in DRUMS[self.pick("drums")].items():
            vel = np.array([{"x": 1.0, "o": 0.45, ".": 0.0}[c] for c in pattern] * self.bars, np.float32)
            vel *= self.rng.uniform(0.7, 1.0, len(vel)) * (self.rng.random(len(vel)) > 0.04)
            sound = drum_hit(inst, self.sr, self.rng).astype(np.float32)
            for s in np.flatnonzero(vel):
                o = self.times[s]
                if 0 <= o < self.n:
                    out[o:o + len(sound)] += vel[s] * sound
        return out[: self.n]

    def bass(self) -> np.ndarray:
        """A bass idiom: roots on 8ths or 16ths, octaves, a walking line, root-fifth, 808 hits..."""
        style, rng = self.pick("bass"), self.rng
        notes = []  # (step, gate in steps, MIDI pitch)
        for b, (root, quality) in enumerate(self.chords):
            r, bar = 28 + (self.key + root + 4) % 12, 16 * b  # roots from E1 to D#2
            if style in ("root8", "root16", "octave8"):
                every = 1 if style == "root16" else 2
                for k, s in enumerate(range(0, 16, every)):
                    octave = 12 if style == "octave8" and k % 2 else 0
                    notes.append((bar + s, 0.8 * every, r + octave + (7 if rng.random() < 0.1 else 0)))
            elif style == "walk":  # chord tones on the beats, then a half step into the next root
                tones = [r + i for i in CHORDS[quality] if i < 12]
                next_root = 28 + (self.key + self.chords[(b + 1) % len(self.chords)][0] + 4) % 12
                line = [r, rng.choice(tones), rng.choice(tones + [r + 12]), next_root + rng.choice([-1, 1])]
                notes += [(bar + s, 3.8, m) for s, m in zip((0, 4, 8, 12), line)]
            elif style == "rootfifth":
                notes += [(bar, 3, r), (bar + 8, 3, r + 7 - (12 if rng.random() < 0.5 else 0))]
            elif style == "sustain":
                notes.append((bar, 16, r))
            elif style == "808":
                notes += [(bar + s, 6, r) for s in (0, 7, 10)]
            elif style in ("reggae", "sparse"):  # syncopated, leaving holes
                for s in (0, 6, 8, 12) if style == "reggae" else (0, 10):
                    if not (s == 0 and style == "reggae" and rng.random() < 0.5):  # the "drop" of the one-drop
                        notes.append((bar + s, 1.8, rng.choice([r, r, r + 7, r + 12])))
        if not notes:  # style "none"
            return np.zeros(self.n, np.float32)
        steps, gates, midi = zip(*notes)
        return self._line(steps, gates, midi, self.pick("bass_inst"))

    def harmony(self) -> np.ndarray:
        """The chords, voiced near middle C, played in a comping rhythm (or arpeggiated)."""
        comp, inst, rng = self.pick("comp"), self.pick("chord_inst"), self.rng
        attacks, gate = COMPS[comp]
        center = 55 + rng.uniform(-4, 4)
        voices: dict[int, list] = {}
        for b, (root, quality) in enumerate(self.chords):
            notes = voice_chord([(self.key + root + i) % 12 for i in CHORDS[quality]], center)
            bar_attacks = attacks if comp != "comp" else sorted(rng.choice(16, rng.integers(2, 5), replace=False))
            for k, s in enumerate(bar_attacks):
                nxt = bar_attacks[k + 1] if k + 1 < len(bar_attacks) else 16 + bar_attacks[0]
                held = gate * (nxt - s)
                chosen = [k % len(notes)] if comp.startswith("arp") else range(len(notes))
                for j in chosen:
                    voices.setdefault(j, []).append((16 * b + s, held, notes[j]))
        out = np.zeros(self.n, np.float32)
        for notes in voices.values():
            steps, gates, midi = zip(*notes)
            out += self._line(steps, gates, midi, inst)
        return out

    def lead(self) -> np.ndarray:
        """A melody: a random walk on the scale, denser on 8ths than on the 16ths between."""
        rng = self.rng
        scale = np.array(SCALES[self.pick("scale")])
        density = rng.uniform(*self.style["density"])  # notes per beat
        total = 16 * self.bars
        p = np.where(np.arange(total) % 2 == 0, 1.4, 0.6) * density / 4
        steps = np.flatnonzero(rng.random(total) < np.minimum(p, 1.0))
        if len(steps) == 0:
            return np.zeros(self.n, np.float32)
        degree = np.cumsum(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3], len(steps)))
        degree = np.abs((degree + 20) % 28 - 14)  # reflect into two octaves
        tonic = 60 + self.key - (12 if self.key > 6 else 0)  # F#3 .. F#4
        midi = tonic + 12 * (degree // len(scale)) + scale[degree % len(scale)]
        gaps = np.diff(np.append(steps, total))
        return self._line(steps, gaps * rng.uniform(0.6, 1.0), midi, self.pick("lead"))

    def render(self) -> np.ndarray:
        """Mix the four parts at the style's levels, then :meth:`master` it."""
        rng = self.rng
        parts = {"drums": self.drums(), "bass": self.bass(), "harmony": self.harmony(), "lead": self.lead()}
        drive = rng.uniform(*self.style["drive"])
        if drive > 0:  # overdriven guitars: distortion on the chords (and the lead if it is a guitar)
            parts["harmony"] = np.tanh(drive * parts["harmony"]) / np.tanh(drive)
            parts["lead"] = np.tanh(0.5 * drive * parts["lead"]) / np.tanh(0.5 * drive)
        levels_db = {name: rng.uniform(*span) for name, span in zip(parts, self.style["levels"])}
        mix = np.zeros(self.n, np.float32)
        for name, x in parts.items():
            rms = np.sqrt(np.mean(x ** 2))
            if rms > 1e-6:
                mix += x / rms * 10 ** (levels_db[name] / 20)
        return self.master(mix)

    def master(self, x: np.ndarray) -> np.ndarray:
        """Room, equalisation and noise in one FFT round trip; then a random peak level.

        The random spectral tilt, band limits and resonance mimic different recordings (the
        genre sets their centre, as recording eras do) and keep the clip-mean timbre of
        genres overlapping.
        """
        rng, sr, n = self.rng, self.sr, self.n
        ir_len = int(0.8 * sr)
        nfft = _fast_len(n + ir_len)
        f = np.fft.rfftfreq(nfft, 1 / sr)
        lf = np.log2(np.maximum(f, 1.0) / 1000)  # octaves from 1 kHz
        t_ir = np.arange(ir_len) / sr
        room = rng.uniform(*self.style["room"])
        ir = rng.standard_normal(ir_len) * np.exp(-t_ir / rng.uniform(0.1, 0.5)) * room * 0.05
        ir[0] = 1.0  # the dry signal
        tilt, high_cut_range, snr_range = self.style["tone"]
        resonance = np.exp(-0.5 * ((lf - rng.uniform(-2.5, 2.5)) / rng.uniform(0.4, 1.2)) ** 2)
        gain_db = (tilt + rng.uniform(-TILT_DB, TILT_DB)) * lf + rng.uniform(-RESONANCE_DB, RESONANCE_DB) * resonance
        low_cut, high_cut = rng.uniform(*LOW_CUT), rng.uniform(*high_cut_range)
        gain = 10 ** (gain_db / 20) / np.sqrt((1 + (low_cut / np.maximum(f, 1.0)) ** 4) * (1 + (f / high_cut) ** 4))
        spec = np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft) * gain
        # White to brown noise, scaled (Parseval) to the drawn signal-to-noise ratio.
        noise = rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))
        noise *= np.maximum(f, 20.0) ** -rng.uniform(0, 1)
        scale = np.sqrt(np.sum(np.abs(spec) ** 2) / np.sum(np.abs(noise) ** 2)) * 10 ** (-rng.uniform(*snr_range) / 20)
        y = np.fft.irfft(spec + scale * noise, nfft)[:n]
        return (y / (np.abs(y).max() + 1e-9) * rng.uniform(0.3, 0.95)).astype(np.float32)


def _fast_len(m: int) -> int:
    """Smallest 2^a 3^b 5^c >= m: an FFT size that is fast without doubling short clips."""
    best = 1 << int(np.ceil(np.log2(m)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35 << max(0, int(np.ceil(np.log2(m / p35))))
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def synth_clip(genre: str, index: int, *, seed: int = 0, seconds: float = 30.0, sample_rate: int = 22050) -> np.ndarray:
    """Clip ``index`` of ``genre`` as float32 mono in [-1, 1]; a pure function of its arguments."""
    rng = np.random.default_rng([seed, GENRES.index(genre), index])
    return _Arrangement(genre, sample_rate, int(round(seconds * sample_rate)), rng).render()


def _write_clip(job: tuple) -> None:
    """Render one clip and write it as 16-bit PCM (the unit of work of a synthesis worker)."""
    path, genre, index, seed, seconds, sample_rate = job
    audio = synth_clip(genre, index, seed=seed, seconds=seconds, sample_rate=sample_rate)
    sf.write(path, audio, sample_rate, format=Path(path).suffix[1:].upper(), subtype="PCM_16")


def make_synthetic_gtzan(
    out: str | Path,
    *,
    seed: int = 0,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    layout: str = "genres_original",
    clips_per_genre: int = 100,
    fmt: str | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic GTZAN: ``<out>/<layout>/<genre>/<genre>.000NN.<fmt>``, 16-bit PCM.

    ``layout`` is ``genres_original`` (the re-release; default format ``wav``) or ``genres``
    (the original tarball; default format ``au``). Indices run 0..clips_per_genre-1, so the
    default 100 per genre covers every name of the fault-filtered split (443/197/290, from
    torchaudio). The stratified split is written to ``<out>/splits/`` as the real one is
    fetched there: 50/25/25 % of each genre's clips, drawn with ``seed`` (500/250/250 at the
    default size). ``workers`` processes render the clips side by side (each clip is numpy on
    one core; the files are the same bytes for any number of workers). Returns the folder
    holding the genre folders.
    """
    if layout not in ("genres_original", "genres"):
        raise ValueError(f"layout must be 'genres_original' or 'genres', got {layout!r}")
    fmt = fmt or ("wav" if layout == "genres_original" else "au")
    if fmt not in ("wav", "au"):
        raise ValueError(f"fmt must be 'wav' or 'au', got {fmt!r}")
    base = Path(out) / layout
    jobs = []
    for genre in GENRES:
        (base / genre).mkdir(parents=True, exist_ok=True)
        jobs += [(base / genre / f"{genre}.{i:05d}.{fmt}", genre, i, seed, seconds, sample_rate)
                 for i in range(clips_per_genre)]
    if workers > 1 and len(jobs) > 1:
        # fork: workers start at once, with numpy and soundfile already imported.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            pool.map(_write_clip, jobs, chunksize=8)
    else:
        for job in jobs:
            _write_clip(job)
    write_stratified_lists(out, clips_per_genre, seed)
    mark_synthetic(out, f"Synthetic GTZAN (musiczoo, seed {seed}, {seconds:g} s clips at {sample_rate} Hz)")
    return base


def write_stratified_lists(root: str | Path, clips_per_genre: int, seed: int) -> None:
    """``<root>/splits/{train,valid,test}_stratified.txt`` for clips 0..clips_per_genre-1 of every
    genre, in the real lists' format (``<genre>/<genre>.000NN.wav``), 50/25/25 % per genre."""
    rng = np.random.default_rng([seed, 7])
    n_train, n_val = clips_per_genre // 2, clips_per_genre // 4
    parts: dict[str, list[str]] = {part: [] for part in LISTED_SPLITS}
    for genre in GENRES:
        order = rng.permutation(clips_per_genre)
        for part, chosen in zip(LISTED_SPLITS, (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])):
            parts[part] += [f"{genre}/{genre}.{i:05d}.wav" for i in sorted(chosen)]
    for part, entries in parts.items():
        write_split_list(lists_folder(root) / split_file_name("{split}_stratified.txt", part), entries)
