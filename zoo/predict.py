"""Genres and tags for anyone's own audio: ``predict_files`` and ``musiczoo predict``.

A file of any length, format, sample rate and channel count is mixed to mono, resampled
to the model's rate and cut into evenly spaced chunks of the model's chunk length that
cover it (``datamodules.primitives.chunks.chunk_starts``, the evaluation chunks of the data modules; a file
shorter than one chunk is zero-padded). Chunk probabilities (softmax for multiclass,
sigmoid for multilabel) are averaged into the file's prediction with ``datamodules.primitives.chunks.clip_mean``,
the clip-level rule the test metrics use, so a published number and a prediction on your
file mean the same thing. Nothing here imports Lightning.

Chunks of several files share a batch, so a folder of short files keeps the device as
busy as one long file. Files are decoded block by block (``datamodules.primitives.audio.open_audio``): the
chunk positions come from the header's length, and chunks are filled as blocks stream in,
so memory does not grow with a file's duration. An unreadable file becomes an error entry
(and a logged warning); the other files go on.

``-`` reads standard input, and a pipe given by name (``/dev/stdin``, ``<(...)``) is read too:
``cat song.wav | musiczoo predict MODEL -``. A pipe cannot seek, so its bytes are read whole into
memory first. URLs are refused in one line (download the file first): a path would turn
``http://`` into ``http:/`` and report "no such file".
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from datamodules.primitives.audio import AudioDecodeError, decode_blocks, open_audio, printable_name
from datamodules.primitives.audio_files import expand_audio_paths
from datamodules.primitives.chunks import chunk_samples, chunk_starts, clip_mean, probabilities

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One file's result: ``labels`` maps label -> probability, highest first (top-k); for a
    regression model, target -> value in the model's target order, every target, on ``scale``
    (the spec's ``target_scale``; None for classifiers and taggers).

    ``segments`` (with ``segments=True``) lists each chunk as ``(start_s, end_s, labels)``;
    ``embedding`` (with ``embeddings=True``) is the mean of the chunks' pooled embeddings, the
    recommender's track vector; ``error`` is set, and ``labels`` empty, when the file could
    not be read.
    """

    path: str
    labels: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    segments: list[tuple[float, float, dict[str, float]]] | None = None
    error: str | None = None
    embedding: list[float] | None = None
    scale: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for optional in ("embedding", "scale"):
            if d[optional] is None:
                del d[optional]
        if self.segments is not None:
            d["segments"] = [{"start_s": s, "end_s": e, "labels": lab} for s, e, lab in self.segments]
        return d


#: The audio argument that means standard input.
STDIN = "-"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def refuse_urls(paths: Iterable[str | Path]) -> None:
    """A ``ValueError`` for the first URL among ``paths``: only local files and pipes are read."""
    for path in paths:
        if isinstance(path, str) and _URL.match(path):
            raise ValueError(f"{path}: URLs are not read; download the file first (e.g. curl -o song.mp3 '{path}') "
                             "or pipe it in: curl -s URL | musiczoo predict MODEL -")


def _is_pipe(path: str | Path) -> bool:
    """``-``, or a name of a pipe or character device (``/dev/stdin`` fed by ``|``, ``<(...)``)."""
    if str(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _open_audio(path: str | Path, sample_rate: int):
    """:func:`open_audio`, or for a pipe its bytes read whole and decoded from memory."""
    if not _is_pipe(path):
        return open_audio(path, sample_rate)
    name = "standard input" if str(path) == STDIN else printable_name(path)
    if str(path) == STDIN and sys.stdin.isatty():
        raise AudioDecodeError(f"{name}: a terminal, not audio; pipe a file in (cat song.wav | musiczoo predict MODEL -)")
    try:
        data = sys.stdin.buffer.read() if str(path) == STDIN else Path(path).read_bytes()
        return decode_blocks(data, sample_rate)
    except (AudioDecodeError, OSError) as e:
        raise AudioDecodeError(f"{name}: {e}") from None


@dataclass
class ChunkedFile:
    """A file as :func:`predict_chunks` takes it: its length and chunk starts (samples at the
    model's rate) and its chunks, an iterable that may decode as it goes (and raise
    :class:`AudioDecodeError` mid-file); or, for a file that could not be opened, its ``error``.
    Done when every chunk has its probabilities."""

    path: str | Path
    num_samples: int = 0
    starts: list[int] = field(default_factory=list)
    chunks: Iterable[torch.Tensor] = ()
    error: str | None = None
    probs: list[torch.Tensor] = field(default_factory=list)
    embeddings: list[torch.Tensor] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.error is not None or len(self.probs) == len(self.starts)


def chunk_layout(path: str | Path, num_samples: int, chunk_size: int, sample_rate: int,
                 max_chunks: int | None = None) -> list[int]:
    """The starts of the chunks a file of ``num_samples`` is predicted from
    (:func:`~datamodules.primitives.chunks.chunk_starts`), with a warning when most of its one
    chunk would be zero padding."""
    if num_samples < chunk_size / 2:
        log.warning("%s: %.2f s of audio is zero-padded to the model's %.2f s chunk; most of its input "
                    "is silence", printable_name(path), num_samples / sample_rate, chunk_size / sample_rate)
    return chunk_starts(num_samples, chunk_size, max_chunks).tolist()


def _top(probs: torch.Tensor, labels: list[str], top_k: int | None) -> dict[str, float]:
    """The ``top_k`` labels, highest first; ``top_k`` None: every output in the model's order
    (a regression model's targets)."""
    if top_k is None:
        return {label: float(v) for label, v in zip(labels, probs.tolist())}
    k = len(labels) if top_k <= 0 else min(top_k, len(labels))
    values, idx = probs.topk(k)
    return {labels[i]: float(v) for v, i in zip(values.tolist(), idx.tolist())}


#: What runs the model: PyTorch, or an exported file (``zoo.export``) through onnxruntime.
RUNTIMES = ("torch", "onnx")


def runtime_of(model) -> str:
    """The runtime ``model`` runs in: ``onnx`` for an exported file (``zoo.exported.ExportedModel``
    says so), ``torch`` for every other model."""
    return getattr(model, "runtime", "torch")


def predict_files(
    model,
    paths: Iterable[str | Path],
    *,
    top_k: int | None = 5,
    segments: bool = False,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = True,
    embeddings: bool = False,
    max_chunks: int | None = None,
    runtime: str = "torch",
) -> Iterator[Prediction]:
    """Yield one :class:`Prediction` per audio file, in order (folders expanded recursively).

    ``model`` is any zoo model; its spec (``model.spec``) gives the sample rate, the chunk
    length, the task and the label names. ``batch_size``
    counts chunks, from one or several files. ``device`` defaults to CUDA when available;
    the model is moved there and used in eval mode (its previous mode is restored).
    ``top_k`` of None or 0 keeps every label. ``embeddings`` adds each file's mean chunk
    embedding; ``max_chunks`` caps the chunks per file (spread evenly over it, see
    :func:`datamodules.primitives.chunks.chunk_starts`).

    ``runtime="onnx"`` runs an exported file instead, on the CPU: ``model`` is then the
    file loaded by ``zoo.load_exported(path)`` (``zoo.exported.ExportedModel``); everything but
    the model call is the same. (A path is not loaded here: an exported file's spec is checked
    against the registered models, whose ``predict`` imports this module, so loading it here
    would close an import cycle.)
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}")
    if runtime_of(model) != runtime:
        if runtime == "onnx" and isinstance(model, (str, os.PathLike)):
            raise ValueError(f"runtime='onnx' runs a loaded exported model: zoo.predict_files(zoo.load_exported({str(model)!r}), "
                             "...)")
        raise ValueError(f"runtime={runtime!r}, but the model is a {runtime_of(model)} model")
    paths = list(paths)
    refuse_urls(paths)
    files = expand_audio_paths(paths)
    spec = model.spec
    chunk_size = chunk_samples(spec.chunk_seconds, spec.sample_rate)

    def chunked(path: Path) -> ChunkedFile:
        """The file opened (its length from the header) with its chunks to be decoded as they are read."""
        try:
            stream = _open_audio(path, spec.sample_rate)
        except AudioDecodeError as e:  # names the file
            return ChunkedFile(path, error=str(e))
        starts = chunk_layout(path, stream.length, chunk_size, spec.sample_rate, max_chunks)
        return ChunkedFile(path, stream.length, starts, _chunks(stream, starts, chunk_size))

    yield from predict_chunks(model, map(chunked, files), top_k=top_k, segments=segments, batch_size=batch_size,
                              device=device, progress=progress, embeddings=embeddings, total=len(files))


def predict_chunks(model, files: Iterable[ChunkedFile], *, top_k: int | None = 5, segments: bool = False,
                   batch_size: int = 16, device: str | torch.device | None = None, progress: bool = True,
                   embeddings: bool = False, total: int | None = None) -> Iterator[Prediction]:
    """:func:`predict_files` on files whose chunks are already laid out (one :class:`ChunkedFile`
    each, taken lazily): one :class:`Prediction` per file, in order.

    The engine of :func:`predict_files`, public for callers that decode a file once for several
    models (``musiczoo index``): chunks of consecutive files share batches of ``batch_size``; a
    file whose chunks fail to decode becomes an error entry and the others go on.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device("cpu" if runtime_of(model) == "onnx"
                          else device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = model.spec
    sample_rate, task, labels = spec.sample_rate, spec.task, list(spec.label_names)
    if task == "regression":  # every target, in order: a value is not ranked against another target's
        top_k = None
    elif top_k is None:
        top_k = 0
    chunk_size = chunk_samples(spec.chunk_seconds, sample_rate)
    was_training = model.training
    model.to(device).eval()
    pending: deque[ChunkedFile] = deque()  # files in order, waiting for their chunks
    queue: list[tuple[ChunkedFile, torch.Tensor]] = []  # chunks waiting for a batch
    failed = count = 0

    def run_batch(n: int):
        jobs, chunks = zip(*queue[:n])
        del queue[:n]
        with torch.inference_mode():
            batch = torch.stack(chunks).to(device)
            if embeddings:
                emb, logits = model.embed_and_logits(batch)
                for job, e in zip(jobs, emb.float().cpu()):
                    job.embeddings.append(e)
            else:
                logits = model(batch)
            probs = probabilities(logits.float(), task, spec.target_scale).cpu()
        for job, p in zip(jobs, probs):
            job.probs.append(p)

    def finished() -> Iterator[Prediction]:
        while pending and pending[0].done:
            bar.update()
            yield _result(pending.popleft(), labels, top_k, segments, sample_rate, chunk_size, spec.target_scale)

    def queue_chunks(job: ChunkedFile):
        """Queue the file's chunks as they are decoded, running each batch as it fills."""
        try:
            for chunk in job.chunks:
                queue.append((job, chunk))
                if len(queue) >= batch_size:
                    run_batch(batch_size)
        except AudioDecodeError as e:  # a problem found mid-file
            raise AudioDecodeError(f"{printable_name(job.path)}: {e}") from None

    bar = tqdm(total=total, unit="file", desc="predicting", disable=not progress)
    try:
        for job in files:
            count += 1
            pending.append(job)
            try:
                if job.error is None:
                    queue_chunks(job)
            except AudioDecodeError as e:  # names the file
                job.error = str(e)
                queue[:] = [(j, c) for j, c in queue if j is not job]
            if job.error is not None:
                log.warning("skipping %s", job.error)
                failed += 1
            yield from finished()
        while queue:
            run_batch(min(batch_size, len(queue)))
        yield from finished()
    finally:
        bar.close()
        model.train(was_training)
    if failed:
        log.warning("%d of %d files could not be read", failed, count)


def _chunks(blocks: Iterable[np.ndarray], starts: list[int], chunk_size: int) -> Iterator[torch.Tensor]:
    """The ``chunk_size``-sample windows at ``starts`` (ascending), filled as ``blocks`` stream in.

    Only the samples from the next window's start on are kept, so memory is about one chunk
    plus one block whatever the file's length. A file shorter than one chunk gives one
    zero-padded window.
    """
    held, held_from, k = np.zeros(0, np.float32), 0, 0
    for block in blocks:
        held = np.concatenate([held, block])
        end = held_from + len(held)
        while k < len(starts) and starts[k] + chunk_size <= end:
            yield torch.from_numpy(held[starts[k] - held_from:][:chunk_size].copy())
            k += 1
        keep = min(starts[k], end) if k < len(starts) else end
        held, held_from = held[keep - held_from:], keep
    for start in starts[k:]:
        chunk = torch.from_numpy(held[start - held_from:][:chunk_size].copy())
        yield F.pad(chunk, (0, chunk_size - len(chunk)))


def _result(job: ChunkedFile, labels, top_k, segments, sample_rate, chunk_size, scale=None) -> Prediction:
    scale = scale if top_k is None else None  # values on the scale: a regression model's
    if job.error:
        return Prediction(printable_name(job.path), error=job.error, scale=scale)
    probs = torch.stack(job.probs)
    one_clip = torch.zeros(len(probs), dtype=torch.long)
    file_probs = clip_mean(probs, one_clip, 1)[0]
    if not torch.isfinite(probs).all():  # never a confident-looking answer made of NaN
        return Prediction(printable_name(job.path), error=f"{printable_name(job.path)}: the model gave non-finite "
                          "outputs on this file", scale=scale)
    embedding = clip_mean(torch.stack(job.embeddings), one_clip, 1)[0].tolist() if job.embeddings else None
    timeline = None
    if segments:
        timeline = [(s / sample_rate, min(s + chunk_size, job.num_samples) / sample_rate, _top(p, labels, top_k))
                    for s, p in zip(job.starts, probs)]
    return Prediction(printable_name(job.path), _top(file_probs, labels, top_k), job.num_samples / sample_rate, timeline,
                      embedding=embedding, scale=scale)


__all__ = ["predict_files", "predict_chunks", "ChunkedFile", "Prediction"]
