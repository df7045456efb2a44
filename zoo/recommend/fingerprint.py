"""A signal-level fingerprint for finding the same recording twice (re-encoded, resampled, re-levelled).

The models' embeddings are the wrong tool for that: a good genre model maps every metal
track to nearly the same vector, so two different recordings of one style look identical
to it. A fingerprint must instead follow the signal itself, and survive what a copy goes
through. This one follows the idea of Haitsma & Kalker ("A Highly Robust Audio
Fingerprinting System", ISMIR 2002): log energies of bands between 250 Hz and 3.5 kHz
(below the Nyquist frequency of any plausible re-encoding, and where lossy codecs keep
the most detail), floored 30 dB below the track's loudest band (codec noise in near-silent
cells would otherwise dominate the logarithm), on a fixed grid of time cells spanning the
track, with each band's mean removed (so a gain or equalisation change cancels out).
Measured on synthetic GTZAN: a copy re-encoded as OGG at 16 kHz or as MP3 correlates with
its original at 0.999; the most similar of 200 different recordings, at 0.64.

:func:`fingerprint` computes it from what indexing decodes anyway: the excerpts of a track its
models' chunks cover (``musiczoo index`` reads nothing else). A track that its chunks cover
whole (up to ``max_chunks`` chunks: 48 s with 16 chunks of 3 s, every GTZAN excerpt) is
fingerprinted whole, as before; a longer one from those evenly spaced excerpts, its frames
pooled into the same 48 cells in time order. A copy of a track has the same duration, so its
excerpts are taken at the same times and the two fingerprints still agree. Libraries
record :data:`METHOD` in their settings; one made when whole tracks were decoded for the
fingerprint (``"whole-track"``) has its tracks embedded again by the next index run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Audio is decoded at this rate for the fingerprint (3.5 kHz bands need no more).
SAMPLE_RATE = 8000
N_FFT, HOP = 512, 128
BANDS, F_MIN, F_MAX = 24, 250.0, 3500.0
#: Energy floor relative to the track's loudest band and frame (-30 dB).
FLOOR = 1e-3
#: Time cells spanning the whole track: its length changes the cell size, not the vector size.
TIME_CELLS = 48
DIM = BANDS * TIME_CELLS


def _band_matrix() -> torch.Tensor:
    """(BANDS, N_FFT // 2 + 1): mean over the FFT bins of each log-spaced band."""
    edges = np.geomspace(F_MIN, F_MAX, BANDS + 1)
    freqs = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)
    rows = [((freqs >= lo) & (freqs < hi)).astype(np.float32) for lo, hi in zip(edges[:-1], edges[1:])]
    matrix = np.stack([r / max(r.sum(), 1) for r in rows])
    return torch.from_numpy(matrix)


_BANDS = _band_matrix()


#: What a library's fingerprints are computed from (its ``settings["fingerprint"]``).
METHOD = "chunk-excerpts"
#: What a library without that setting has: fingerprints of whole decoded tracks.
OLD_METHOD = "whole-track"


def fingerprint(audio: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(DIM,) float32 unit vector (zero for silence) of mono audio at :data:`SAMPLE_RATE`: a whole
    track, or the excerpts of it that were read, in time order (their frames are pooled as one)."""
    excerpts = [audio] if isinstance(audio, np.ndarray) else list(audio)
    return _vector(torch.cat([_band_powers(x) for x in excerpts], dim=1))


def _band_powers(audio: np.ndarray) -> torch.Tensor:
    """(BANDS, frames) band powers of one stretch of audio (``torch.stft``'s centred frames)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if len(x) < N_FFT:
        x = F.pad(x, (0, N_FFT - len(x)))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs() ** 2
    return _BANDS @ spec


def _vector(power: torch.Tensor) -> np.ndarray:
    """The fingerprint of a track's band powers (BANDS, frames): floored log energies, pooled
    into :data:`TIME_CELLS` cells, each band's mean removed, unit length."""
    energy = torch.log10(power + FLOOR * power.max() + 1e-10)
    cells = F.adaptive_avg_pool1d(energy[None], TIME_CELLS)[0]  # (BANDS, TIME_CELLS)
    cells = cells - cells.mean(dim=1, keepdim=True)
    vector = cells.flatten().numpy()
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)
