"""Audio front-ends: waveform (batch, samples) -> log features (batch, 1, freq, time): Mel, MFCC,
STFT, and the pitch-aware constant-Q (``cqt``) and chroma.

The front-end is the first layer of every model, so a checkpoint maps raw audio to
predictions on its own. Two rules follow from that:

* Everything derived (window, Mel filterbank, DCT matrix) is rebuilt from the config
  and registered as a *non-persistent* buffer: it never enters a state_dict, so a
  checkpoint does not depend on how a torchaudio version happens to compute them.
* Features are computed in float32 with autocast disabled: log-power spectra in
  bf16/fp16 lose the dynamic range that the whole model depends on.

Defaults follow librosa (the field's reference): periodic Hann window, centred frames
with zero padding, Slaney Mel scale and norm, power -> dB with ``amin=1e-10``,
``ref=1`` and a per-example ``top_db`` floor. ``tests/test_frontends.py`` checks each
feature against librosa on a real music clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

FRONTENDS: dict[str, type["Frontend"]] = {}


def _register(cls):
    FRONTENDS[cls.name] = cls
    return cls


class Frontend(nn.Module):
    """Shared STFT machinery; subclasses map the power spectrogram to their feature."""

    name = ""
    #: Rows a transposition by one semitone moves the output by, for pitch-aligned front-ends
    #: (``cqt``, ``chroma``; what ``KeyShift`` augments with); None where pitch is not a row shift.
    rows_per_semitone: int | None = None
    #: Whether the rows are pitch classes, so that a shift past the top wraps round to the bottom.
    pitch_classes = False

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int = 512,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        pad_mode: str = "constant",
    ):
        super().__init__()
        if n_fft <= 0 or hop_length <= 0:
            raise ValueError(f"{self.name}: n_fft and hop_length must be positive, got {n_fft}, {hop_length}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.f_min = float(f_min)
        self.f_max = float(f_max) if f_max is not None else sample_rate / 2.0
        self.top_db = top_db
        self.pad_mode = pad_mode
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    # ---- interface -------------------------------------------------------------
    @property
    def n_bins(self) -> int:
        """Number of frequency rows of the output."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def config(self) -> dict:
        """Everything but the sample rate needed to rebuild this front-end (the sample rate
        belongs to the model, which passes it in)."""
        return {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "top_db": self.top_db,
            "pad_mode": self.pad_mode,
        }

    def features(self, power: torch.Tensor) -> torch.Tensor:
        """(B, n_fft//2+1, T) power spectrogram -> (B, F, T) feature."""
        raise NotImplementedError

    # ---- shared ----------------------------------------------------------------
    def power_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # ONNX's STFT has no complex type: the real form, same numbers
            return self._real_stft(waveform).square().sum(-1)
        spec = torch.stft(
            waveform,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode=self.pad_mode,
            return_complex=True,
        )
        return spec.real.square().addcmul_(spec.imag, spec.imag)  # |X|^2 with one temporary, not three

    def _real_stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, n_fft//2+1, T, 2) real and imaginary parts, the centred padding done first (what
        ``torch.onnx.export`` turns into ONNX's ``Pad`` and ``STFT``)."""
        half = self.n_fft // 2
        padded = F.pad(waveform, (half, half), mode=self.pad_mode)
        return torch.stft(padded, n_fft=self.n_fft, hop_length=self.hop_length, window=self.window, center=False,
                          return_complex=False)

    def power_to_db(self, power: torch.Tensor) -> torch.Tensor:
        """10*log10(power) with librosa's amin and a per-example top_db floor.

        In place unless gradients flow back to the audio (an adversarial or saliency use):
        the dB step is a third of the front-end's time when each op allocates its output.
        """
        in_place = not power.requires_grad and not torch.onnx.is_in_onnx_export()  # ONNX has no out= arguments
        db = power.clamp_min(1e-10)
        db = db.log10_().mul_(10.0) if in_place else 10.0 * torch.log10(db)
        if self.top_db is not None:
            floor = db.amax(dim=tuple(range(1, db.dim())), keepdim=True) - self.top_db
            db = torch.maximum(db, floor, out=db) if in_place else torch.maximum(db, floor)
        return db

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 3 and waveform.shape[1] == 1:
            waveform = waveform[:, 0]
        if waveform.dim() != 2:
            raise ValueError(f"{self.name}: expected a (batch, samples) waveform, got shape {tuple(waveform.shape)}")
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            feats = self.features(self.power_spectrogram(waveform.float()))
        return feats.unsqueeze(1)


@_register
class LogMel(Frontend):
    """Log-Mel spectrogram in dB (librosa.power_to_db(melspectrogram))."""

    name = "mel"

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128, **kw):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, **kw)
        self.n_mels = int(n_mels)
        fb = AF.melscale_fbanks(
            self.n_fft // 2 + 1, self.f_min, self.f_max, self.n_mels, self.sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("mel_fb", fb.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    @property
    def n_bins(self) -> int:
        return self.n_mels

    def config(self) -> dict:
        return {**super().config(), "n_mels": self.n_mels}

    def features(self, power):
        return self.power_to_db(torch.matmul(self.mel_fb, power))


@_register
class MFCC(LogMel):
    """MFCCs: orthonormal DCT-II of the log-Mel spectrogram (librosa.feature.mfcc)."""

    name = "mfcc"

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128, n_mfcc: int = 40, **kw):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, **kw)
        if not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"mfcc: n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
        self.n_mfcc = int(n_mfcc)
        self.register_buffer("dct", AF.create_dct(self.n_mfcc, self.n_mels, norm="ortho").T.contiguous(), persistent=False)

    @property
    def n_bins(self) -> int:
        return self.n_mfcc

    def config(self) -> dict:
        return {**super().config(), "n_mfcc": self.n_mfcc}

    def features(self, power):
        return torch.matmul(self.dct, super().features(power))


@_register
class LogSTFT(Frontend):
    """Log-magnitude linear-frequency spectrogram in dB (librosa.amplitude_to_db(|stft|)).

    ``f_min``/``f_max`` crop the frequency rows, so a model can ignore, e.g., the top octave.
    """

    name = "stft"

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 512, **kw):
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, **kw)
        freqs = torch.linspace(0, self.sample_rate / 2, self.n_fft // 2 + 1)
        keep = torch.nonzero((freqs >= self.f_min) & (freqs <= self.f_max)).flatten()
        self._rows = slice(int(keep[0]), int(keep[-1]) + 1)

    @property
    def n_bins(self) -> int:
        return self._rows.stop - self._rows.start

    def features(self, power):
        return self.power_to_db(power[:, self._rows])


#: C1, the lowest note of an 88-key piano's bottom octave but three keys: librosa's CQT default ``fmin``.
C1_HZ = 32.703195662574764


@_register
class LogCQT(Frontend):
    """Constant-Q (log-frequency) spectrogram in dB: a semitone (or finer) filterbank on the STFT.

    Not a true constant-Q transform (Brown 1991; librosa.cqt convolves a kernel per bin): the
    bins are triangular filters on the power spectrogram, one per step of ``bins_per_octave``
    from ``f_min`` over ``n_octaves``, each spanning the steps on either side in log-frequency,
    and at least one FFT bin wide where the STFT is coarser than the steps (low notes; a
    4096-point FFT resolves semitones from about 150 Hz at 22,050 Hz). So it costs one matrix
    product on the STFT every front-end computes, and a tone lands on the bin of its pitch:
    ``tests/test_frontends.py`` checks the peak bin of tones against librosa.cqt's and the
    two spectrograms of a real clip against each other. Transposing music by a semitone moves
    its rows by ``bins_per_octave / 12``, which is what cover recognition relies on.
    """

    name = "cqt"

    def __init__(self, sample_rate: int = 22050, n_fft: int = 4096, hop_length: int = 512, f_min: float = C1_HZ,
                 n_octaves: int = 7, bins_per_octave: int = 12, **kw):
        if kw.pop("f_max", None) is not None:
            raise ValueError(f"{self.name}: the top bin is f_min * 2**n_octaves; give n_octaves, not f_max")
        if f_min <= 0 or n_octaves < 1 or bins_per_octave < 1:
            raise ValueError(f"{self.name}: f_min, n_octaves and bins_per_octave must be positive")
        top = f_min * 2.0 ** (n_octaves - 1 / bins_per_octave)
        if top > sample_rate / 2:
            raise ValueError(f"{self.name}: {n_octaves} octaves from {f_min:g} Hz reach {top:.0f} Hz, above half the "
                             f"sample rate ({sample_rate / 2:g} Hz)")
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, f_min=f_min, f_max=top, **kw)
        self.n_octaves, self.bins_per_octave = int(n_octaves), int(bins_per_octave)
        if self.bins_per_octave % 12 == 0:
            self.rows_per_semitone = self.bins_per_octave // 12
        self.register_buffer("cqt_fb", self._filterbank(), persistent=False)  # (n_octaves * bins_per_octave, n_freqs)

    def _filterbank(self) -> torch.Tensor:
        freqs = torch.linspace(0, self.sample_rate / 2, self.n_fft // 2 + 1, dtype=torch.float64)
        steps = torch.arange(self.n_octaves * self.bins_per_octave, dtype=torch.float64)
        # Each FFT bin's place on the log-frequency axis, in steps above f_min (the DC bin: far below).
        place = self.bins_per_octave * torch.log2(freqs.clamp_min(1e-6) / self.f_min)
        centres = self.f_min * 2.0 ** (steps / self.bins_per_octave)
        fft_step = self.sample_rate / self.n_fft  # Hz between FFT bins
        half_width = torch.maximum(torch.ones_like(steps),  # one step, or one FFT bin where that is wider
                                   self.bins_per_octave * torch.log2((centres + fft_step) / centres))
        weights = (1 - (place[None, :] - steps[:, None]).abs() / half_width[:, None]).clamp_min(0)
        return weights.float().contiguous()

    @property
    def n_bins(self) -> int:
        return self.n_octaves * self.bins_per_octave

    def config(self) -> dict:
        config = {**super().config(), "n_octaves": self.n_octaves, "bins_per_octave": self.bins_per_octave}
        del config["f_max"]  # decided by f_min and n_octaves
        return config

    def features(self, power):
        return self.power_to_db(torch.matmul(self.cqt_fb, power))


@_register
class Chroma(LogCQT):
    """Chromagram in dB: the constant-Q power folded into the 12 pitch classes, whatever the octave.

    Row 0 is the pitch class of ``f_min`` (C for the default C1), then upwards in semitones.
    Keeps melody and harmony and drops the octave, register and most of the timbre, so two
    performances of one work in different instrumentations look alike (cover recognition's
    classic feature; Ellis & Poliner 2007)."""

    name = "chroma"
    pitch_classes = True

    def __init__(self, sample_rate: int = 22050, n_fft: int = 4096, hop_length: int = 512, bins_per_octave: int = 12, **kw):
        if bins_per_octave % 12:
            raise ValueError(f"{self.name}: bins_per_octave must be a multiple of 12, got {bins_per_octave}")
        super().__init__(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, bins_per_octave=bins_per_octave, **kw)
        pitch_class = (torch.arange(super().n_bins) // self.rows_per_semitone) % 12
        fold = F.one_hot(pitch_class, 12).T.float()  # (12, cqt bins)
        self.register_buffer("chroma_fb", (fold @ self.cqt_fb).contiguous(), persistent=False)
        self.rows_per_semitone = 1  # after the fold: a row per pitch class

    @property
    def n_bins(self) -> int:
        return 12

    def features(self, power):
        return self.power_to_db(torch.matmul(self.chroma_fb, power))


def list_transforms() -> list[str]:
    return sorted(FRONTENDS)


def create_frontend(name: str, sample_rate: int = 22050, **params) -> Frontend:
    """Build a front-end by name; unknown names or parameters get a one-line error."""
    if name not in FRONTENDS:
        raise UnknownNameError(f"unknown transform {name!r}; valid transforms: {', '.join(list_transforms())}")
    try:
        return FRONTENDS[name](sample_rate=sample_rate, **params)
    except TypeError as e:
        raise ValueError(f"transform {name!r}: {e}") from None


class UnknownNameError(ValueError):
    """A model, transform or dataset name that is not registered (the CLI prints it as one line)."""


__all__ = ["Frontend", "LogMel", "MFCC", "LogSTFT", "LogCQT", "Chroma", "create_frontend", "list_transforms",
           "UnknownNameError"]
