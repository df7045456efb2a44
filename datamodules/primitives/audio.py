"""Decoding and finding audio: the one rule every part of the project reads audio by.

* :func:`decode_blocks` / :func:`decode_audio`: any file soundfile reads -> mono float32 at the
  model's rate, streamed in blocks or all at once; garbage, damaged headers and out-of-range
  samples are refused with the reason (:class:`AudioDecodeError`, which does not name the
  source: the caller knows what it called it);
* :func:`open_audio` / :func:`load_audio`: the same for a file path, with the file named in
  every error raised while opening it;
* which files count as audio is :mod:`datamodules.primitives.audio_files`'s.

So a clip gives the same samples whether it is cached for training, predicted from the
command line or indexed for recommendation. Imports torch (torchaudio's resampler), numpy and
soundfile, nothing of Lightning and nothing of the project.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import soundfile as sf
import torch
from torchaudio.transforms import Resample

log = logging.getLogger(__name__)

#: What can be decoded: a file path or the encoded bytes of a file.
AudioSource = Union[str, os.PathLike, bytes]



class AudioDecodeError(ValueError):
    """A source that gives no usable audio; the message says why. Raised by :func:`open_audio` and
    :func:`load_audio` it starts with the file's name; by the ``decode_*`` functions it does not."""


#: Input seconds read per block by :func:`decode_blocks`: memory stays a few MB whatever the duration.
BLOCK_SECONDS = 10.0

#: Largest sample magnitude accepted. Decoded PCM is within [-1, 1]; float files may overshoot a
#: little, but values far beyond are not audio (and would overflow the float16 cache, max 65504).
MAX_SAMPLE = 1e4


def printable_name(path: str | os.PathLike) -> str:
    """A file name that can be printed and written to JSON/CSV: a name that is not valid UTF-8
    (possible on Linux) shows its odd bytes as ``\\xNN`` instead of breaking the output."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _open(source: AudioSource) -> tuple[sf.SoundFile, int]:
    """Open ``source`` with soundfile; returns the file and its size in bytes.

    A path is opened by its bytes (``os.fsencode``): soundfile encodes a ``str`` path
    strictly, so a name that is not valid UTF-8 would otherwise fail as if it were corrupt.
    """
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    return sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else os.fsencode(source)), size


def _stated_data_end(source: AudioSource, fmt: str, size: int) -> tuple[int, bool] | None:
    """(where the header says the audio data ends, whether the data must reach the end of the
    file) for AU, WAV and AIFF; None for other formats or a header that states no size."""
    if fmt not in ("AU", "WAV", "WAVEX", "AIFF"):
        return None
    with (io.BytesIO(source) if isinstance(source, bytes) else open(os.fsencode(source), "rb")) as f:
        if fmt == "AU":  # magic, data offset, data size (0xFFFFFFFF: unknown); the data runs to the end
            head = f.read(12)
            offset, length = struct.unpack(">II" if head[:4] == b".snd" else "<II", head[4:12])
            return None if length == 0xFFFFFFFF else (offset + length, True)
        # RIFF/FORM: chunks (id, size) from byte 12; other chunks may follow the audio data
        order, data_id = ("<I", b"data") if fmt != "AIFF" else (">I", b"SSND")
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(8)
            (length,) = struct.unpack(order, head[4:])
            if head[:4] == data_id:
                return None if length in (0, 0xFFFFFFFF) else (pos + 8 + length, False)
            pos += 8 + length + (length & 1)
    return None


def _check_container(f: sf.SoundFile, source: AudioSource, size: int) -> None:
    """Refuse a file whose container libsndfile had to guess, or whose header states more
    (or, for AU, other) audio data than the file holds: such a file decodes as noise or as
    a clip of the wrong length, and a model would answer confidently on it."""
    kind = (Path(os.fsdecode(source)).suffix.lstrip(".").upper() if not isinstance(source, bytes) else "") or f.format
    if f.format == "RAW":
        raise AudioDecodeError(f"not a valid {kind} file (no valid header; libsndfile guessed a raw stream)")
    stated = _stated_data_end(source, f.format, size)
    if stated and (stated[0] > size or (stated[1] and stated[0] != size)):
        raise AudioDecodeError(f"not a valid {kind} file (its header states {stated[0]} bytes of header and "
                               f"audio data, the file holds {size}: truncated or damaged)")


def _check_range(x: np.ndarray) -> None:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if not math.isfinite(peak):
        raise AudioDecodeError("contains NaN or infinite samples")
    if peak > MAX_SAMPLE:
        raise AudioDecodeError(f"sample values out of range (max |x| = {peak:.3g}); not normalised audio")


@functools.lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torch.nn.Module:
    """``AF.resample`` with its sinc kernel computed once per rate pair (the functional form
    rebuilds it on every call, i.e. for every block of every file)."""
    return Resample(orig, new)


def _resampling_groups(orig: int, new: int) -> tuple[int, int, int]:
    """(input samples per group, output samples per group, margin) of ``AF.resample(orig -> new)``:
    the rates reduced by their gcd, and how many input samples (a multiple of the group) on each
    side of a group its sinc kernel reads (``width`` + 1, with AF.resample's default width)."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))  # AF.resample's defaults
    return orig, new, math.ceil((width + 1) / orig) * orig


class _StreamResampler:
    """torchaudio's ``resample`` applied block by block, with the one-shot result.

    ``AF.resample`` is a strided convolution: output group ``j`` (``new`` samples, rates
    reduced by their gcd) reads input ``[j*orig - width, j*orig + orig + width)``. Each call
    here resamples a window that starts on a multiple of ``orig`` and reaches ``margin``
    samples (>= width) past the groups it keeps, so every kept sample sees exactly the input
    (or, at the true start and end, the zero padding) that the one-shot call sees.
    """

    def __init__(self, orig: int, new: int):
        self.rates = (orig, new)
        self.orig, self.new, self.margin = _resampling_groups(orig, new)
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # input index of buffer[0], a multiple of orig
        self.groups_done = 0

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """Resampled output for all groups that ``x`` (and what came before) completes."""
        self.buffer = np.concatenate([self.buffer, x])
        end = self.buffer_start + len(self.buffer)
        groups = math.ceil(end / self.orig) if last else max((end - self.margin) // self.orig, 0)
        if groups <= self.groups_done:
            return np.zeros(0, np.float32)
        start = max(self.groups_done * self.orig - self.margin, self.buffer_start)
        window = torch.from_numpy(self.buffer[start - self.buffer_start:])
        with torch.no_grad():
            out = _resampler(*self.rates)(window).numpy()
        first = (self.groups_done - start // self.orig) * self.new
        out = out[first:first + (groups - self.groups_done) * self.new]
        self.groups_done = groups
        keep = max(groups * self.orig - self.margin, self.buffer_start)
        self.buffer, self.buffer_start = self.buffer[keep - self.buffer_start:], keep
        return out


class AudioStream:
    """An opened, checked audio source whose mono blocks at ``sample_rate`` are read on iteration.

    ``length`` (output samples) is known before any audio is decoded, from the header, so a
    caller can place chunks first and fill them as blocks arrive. Iterate once; the file is
    closed when iteration ends (or by :meth:`close`).
    """

    def __init__(self, source: AudioSource, sample_rate: int, block_seconds: float = BLOCK_SECONDS):
        try:
            self._file, size = _open(source)
        except AudioDecodeError:
            raise
        except Exception as e:  # libsndfile reports truncated/unknown formats in many ways
            # (for a truncated mp3 it says "File does not exist...", though the file does exist)
            why = getattr(e, "error_string", e)  # without soundfile's "Error opening <name>:"; the caller names the file
            raise AudioDecodeError(f"cannot read audio: truncated, corrupt or not audio (libsndfile: {why})") from None
        try:
            _check_container(self._file, source, size)
            if self._file.frames == 0:
                raise AudioDecodeError("empty (no audio frames)")
        except BaseException:
            self._file.close()
            raise
        self.source_rate, self.frames = self._file.samplerate, self._file.frames
        self.sample_rate = int(sample_rate)
        self.length = self.length_at(self.sample_rate)
        self.block_frames = max(1, int(block_seconds * self.source_rate))

    def length_at(self, rate: int) -> int:
        """The number of samples the file decodes to at ``rate`` (``length`` at the stream's own rate)."""
        return math.ceil(self.frames * rate / self.source_rate)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        resampler = _StreamResampler(self.source_rate, self.sample_rate) if self.source_rate != self.sample_rate else None
        done = 0
        try:
            while True:
                mono = self._read_mono(self.block_frames, done)
                last = len(mono) == 0 or done + len(mono) >= self.frames
                if len(mono) == 0 and done < self.frames:
                    raise self._truncated(done)
                done += len(mono)
                if resampler is not None:
                    mono = resampler.push(mono, last)
                    _check_range(mono)
                if len(mono):
                    yield mono
                if last:
                    return
        finally:
            self.close()

    def excerpts(self, spans: dict[int, Sequence[tuple[int, int]]]) -> dict[int, list[np.ndarray]]:
        """The samples ``[start, stop)`` of each span, at the span's rate, read in one pass: instead
        of iterating, for callers that use a few parts of a long file (the chunks a track is
        indexed from).

        ``spans`` maps a sample rate to spans in samples at that rate; each comes back as mono
        float32 equal to the same slice of ``decode_audio(source, rate)`` (to float rounding),
        zero-padded past the end. Only the source frames the spans need are decoded (each
        rate's spans widened by the resampler's reach), every frame once however many spans
        and rates share it; a seekable file is read by seeking, another streamed in blocks.
        """
        wanted = {rate: [(int(a), int(b)) for a, b in rate_spans] for rate, rate_spans in spans.items()}
        windows = {rate: [self._source_window(rate, a, b) for a, b in rate_spans] for rate, rate_spans in wanted.items()}
        regions = merged_spans([w for rate_windows in windows.values() for w in rate_windows])
        try:
            mono = dict(zip(regions, self._read_regions(regions)))
        finally:
            self.close()
        out = {}
        for rate, rate_spans in wanted.items():
            out[rate] = []
            for (a, b), (wa, wb) in zip(rate_spans, windows[rate]):
                region = next(r for r in regions if r[0] <= wa and wb <= r[1])
                x = mono[region][wa - region[0]:wb - region[0]]
                if rate != self.source_rate and len(x):
                    orig, new, _ = _resampling_groups(self.source_rate, rate)
                    with torch.no_grad():
                        x = _resampler(self.source_rate, rate)(torch.from_numpy(x)).numpy()
                    first = a - wa // orig * new  # the window's first output sample is group wa / orig's
                    x = x[max(first, 0):][:b - a]
                    _check_range(x)
                else:
                    x = x[max(a - wa, 0):][:b - a]
                out[rate].append(np.pad(x, (0, b - a - len(x))) if len(x) < b - a else np.ascontiguousarray(x))
        return out

    def _source_window(self, rate: int, start: int, stop: int) -> tuple[int, int]:
        """The source frames output samples ``[start, stop)`` at ``rate`` are computed from: for a
        resampled rate, whole resampling groups plus the kernel's margin on each side, starting
        on a group boundary so that the window's groups are the whole file's."""
        if rate == self.source_rate:
            return min(start, self.frames), min(max(stop, start), self.frames)
        orig, new, margin = _resampling_groups(self.source_rate, rate)
        first, last = start // new, max(stop - 1, start) // new
        return (min(max(first * orig - margin, 0), self.frames),
                min(max((last + 1) * orig + margin, 0), self.frames))

    def _read_regions(self, regions: list[tuple[int, int]]) -> Iterator[np.ndarray]:
        """Mono source-rate samples of each (sorted, disjoint) region, seeking to it where the file
        can seek (libsndfile seeks MP3 sample-exactly) and reading on through it otherwise."""
        position = 0
        for start, stop in regions:
            if start > position and self._file.seekable():
                try:
                    self._file.seek(start)
                except Exception as e:
                    raise AudioDecodeError(f"cannot seek to frame {start} of {self.frames}: truncated or corrupt "
                                           f"(libsndfile: {getattr(e, 'error_string', e)})") from None
            else:  # read up to the region, in blocks, and let them go
                while position < start:
                    position += len(self._read_to(min(self.block_frames, start - position), position))
            position = start
            parts = []
            while position < stop:
                parts.append(self._read_to(min(self.block_frames, stop - position), position))
                position += len(parts[-1])
            yield np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _read_mono(self, frames: int, position: int) -> np.ndarray:
        """Up to ``frames`` frames from ``position`` on, checked and mixed to mono; empty at the end."""
        try:
            data = self._file.read(frames, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioDecodeError(f"cannot read audio after {position} frames: truncated or corrupt "
                                   f"(libsndfile: {getattr(e, 'error_string', e)})") from None
        _check_range(data)  # before mixing, where +x and -x channels would cancel
        return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)

    def _read_to(self, frames: int, position: int) -> np.ndarray:
        """:meth:`_read_mono` of frames the header says are there: none is a truncated file."""
        mono = self._read_mono(frames, position)
        if len(mono) == 0:
            raise self._truncated(position)
        return mono

    def _truncated(self, position: int) -> AudioDecodeError:
        return AudioDecodeError(f"truncated: the header states {self.frames} frames, the file holds {position}")


def merged_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, stop)`` spans sorted, empty ones dropped, overlapping or touching ones joined."""
    merged: list[list[int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [tuple(m) for m in merged]


def decode_blocks(source: AudioSource, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> AudioStream:
    """Decode a file path or encoded bytes to mono float32 blocks at ``sample_rate``.

    The one decoding rule of the project, streamed: about ``block_seconds`` of input is held
    at a time, and the blocks joined equal the one-shot ``AF.resample`` of the whole mono mix
    (to float rounding). Opening checks the container and raises :class:`AudioDecodeError`
    at once; the returned stream knows its ``length`` before decoding.
    """
    return AudioStream(source, sample_rate, block_seconds)


def decode_audio(source: AudioSource, sample_rate: int) -> np.ndarray:
    """Decode a file path or encoded bytes to mono float32 at ``sample_rate``, all at once.

    The convenience for short clips; the training cache, ``musiczoo predict`` and the
    recommender all decode with :func:`decode_blocks`, so a clip gives the same samples in each.
    """
    return np.concatenate(list(decode_blocks(source, sample_rate)))


def open_audio(path: str | os.PathLike, sample_rate: int) -> AudioStream:
    """:func:`decode_blocks` of a file, with the file named in any error raised while opening it
    (a missing file included); blocks are decoded as they are read."""
    if not Path(path).is_file():
        raise AudioDecodeError(f"{printable_name(path)}: no such file")
    try:
        return decode_blocks(path, sample_rate)
    except AudioDecodeError as e:
        raise AudioDecodeError(f"{printable_name(path)}: {e}") from None


def load_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """A file decoded to a mono float32 (samples,) tensor at ``sample_rate``; every error names the file."""
    stream = open_audio(path, sample_rate)
    try:
        return torch.from_numpy(np.concatenate(list(stream)))
    except AudioDecodeError as e:
        raise AudioDecodeError(f"{printable_name(path)}: {e}") from None
