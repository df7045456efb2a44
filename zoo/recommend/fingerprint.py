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
"""

from __future__ import annotations

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


def fingerprint(audio: np.ndarray) -> np.ndarray:
    """(DIM,) float32 unit vector of mono ``audio`` at :data:`SAMPLE_RATE` (zero for silence)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if len(x) < N_FFT:
        x = F.pad(x, (0, N_FFT - len(x)))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs() ** 2
    power = _BANDS @ spec  # (BANDS, frames)
    energy = torch.log10(power + FLOOR * power.max() + 1e-10)
    cells = F.adaptive_avg_pool1d(energy[None], TIME_CELLS)[0]  # (BANDS, TIME_CELLS)
    cells = cells - cells.mean(dim=1, keepdim=True)
    vector = cells.flatten().numpy()
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)
