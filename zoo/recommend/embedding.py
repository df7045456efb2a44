"""Embedding tracks for a library: each read once for every model of the library and its fingerprint.

Indexing places each track by a few evenly spaced chunks per model (``max_chunks``, 16 by
default), so most of a long track is never used: of a 4-minute song, 16 chunks of 3 s are a
fifth. :func:`read_track` therefore lays out every model's chunks from the file's header (the
layout ``predict_files`` would use), decodes only the source frames they need, each once
however many models share it (seeking where the format allows: libsndfile seeks MP3, OGG and
FLAC sample-exactly), resamples once per model rate, and computes the fingerprint from the same
excerpts at its own rate (:mod:`zoo.recommend.fingerprint`). Memory is a track's chunks, not
its length.

:func:`read_ahead` does that in a background thread one or two tracks ahead of the models, so
decoding overlaps the forward passes (libsndfile and torch release the GIL); :func:`embed_files`
runs the models on what it read.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from datamodules.primitives.audio import AudioDecodeError, merged_spans, open_audio, printable_name
from datamodules.primitives.chunks import chunk_samples

from ..predict import ChunkedFile, chunk_layout, predict_chunks
from . import fingerprint as fp
from .store import FINGERPRINT, TOP_LABELS

#: Tracks decoded ahead of the one the models are on: enough to hide a slow file behind the models,
#: few enough that memory stays a few tracks' chunks.
READ_AHEAD = 2


@dataclass
class TrackRead:
    """A track decoded for a library: per model, the track as :func:`zoo.predict.predict_chunks`
    takes it (its chunks already in memory); its fingerprint; or, if it could not be read, the error."""

    path: Path
    per_model: list[ChunkedFile]
    fingerprint: np.ndarray | None = None
    error: str | None = None


def read_track(path: Path, specs: Sequence, max_chunks: int) -> TrackRead:
    """Decode what ``path``'s chunks for the models of ``specs`` (their ``ModelSpec``) and its
    fingerprint need, in one pass. An unreadable file gives a :class:`TrackRead` with ``error``
    (naming the file), not an exception, so one bad file never stops a run."""
    try:
        stream = open_audio(path, specs[0].sample_rate)
    except (AudioDecodeError, OSError) as e:  # OSError: gone or unreadable since it was listed
        return TrackRead(path, [], error=str(e) if isinstance(e, AudioDecodeError) else f"{printable_name(path)}: {e}")
    layouts = []  # (rate, chunk size, length, starts) per model
    for spec in specs:
        rate, size = spec.sample_rate, chunk_samples(spec.chunk_seconds, spec.sample_rate)
        length = stream.length_at(rate)
        layouts.append((rate, size, length, chunk_layout(path, length, size, rate, max_chunks)))
    spans: dict[int, list[tuple[int, int]]] = {}
    for rate, size, _, starts in layouts:
        spans.setdefault(rate, []).extend((s, s + size) for s in starts)
    fingerprint_spans = _fingerprint_spans(layouts, stream.length_at(fp.SAMPLE_RATE))
    spans.setdefault(fp.SAMPLE_RATE, []).extend(fingerprint_spans)
    try:
        excerpts = stream.excerpts(spans)
    except (AudioDecodeError, OSError) as e:  # found mid-file
        return TrackRead(path, [], error=f"{printable_name(path)}: {e}")
    taken = {rate: 0 for rate in spans}
    per_model = []
    for rate, size, length, starts in layouts:
        chunks = [torch.from_numpy(x) for x in excerpts[rate][taken[rate]:taken[rate] + len(starts)]]
        taken[rate] += len(starts)
        per_model.append(ChunkedFile(path, length, starts, chunks))
    fingerprint = fp.fingerprint(excerpts[fp.SAMPLE_RATE][taken[fp.SAMPLE_RATE]:])
    return TrackRead(path, per_model, fingerprint)


def _fingerprint_spans(layouts: list, length: int) -> list[tuple[int, int]]:
    """The stretches of the track every model's chunks cover, at the fingerprint's rate, joined
    where they overlap or touch: the whole track when its chunks cover it."""
    covered = merged_spans((math.floor(s * fp.SAMPLE_RATE / rate), min(math.ceil((s + size) * fp.SAMPLE_RATE / rate), length))
                           for rate, size, _, starts in layouts for s in starts)
    return covered or [(0, length)]


def read_ahead(paths: Iterable[Path], specs: Sequence, max_chunks: int) -> Iterator[TrackRead]:
    """:func:`read_track` of each path, in order, decoded :data:`READ_AHEAD` tracks ahead in a thread."""
    with ThreadPoolExecutor(1, thread_name_prefix="musiczoo-read") as pool:
        waiting: deque = deque()
        for path in paths:
            waiting.append(pool.submit(read_track, path, specs, max_chunks))
            if len(waiting) > READ_AHEAD:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()


def embed_files(models: Sequence, paths: list[Path], settings: dict, *, batch_size: int = 16,
                device: str | None = None) -> list[tuple[dict, list[dict], str | None]]:
    """Per file: (arrays ``model<i>.embedding``/``.probabilities`` of shape (1, D), ``fingerprint``
    and ``duration_s``, top labels per model, error). A file that cannot be decoded gets its
    error instead.

    Each file is decoded once, only where its chunks are, for every model and the fingerprint
    (:func:`read_track`), a track or two ahead of the models in a thread. The models
    then run on groups of consecutive files holding at least ``batch_size`` chunks, so short
    files still fill batches while memory stays a few tracks' chunks.
    """
    specs = [model.spec for model in models]
    results: list[tuple[dict, list[dict], str | None]] = []
    group: list[TrackRead] = []

    def embed_group():
        rows = [({FINGERPRINT: read.fingerprint[None]}, []) for read in group]
        errors = [None] * len(group)
        for i, model in enumerate(models):
            chunked = [read.per_model[i] for read in group]
            for j, result in enumerate(predict_chunks(model, chunked, top_k=0, embeddings=True, batch_size=batch_size,
                                                      device=device, progress=False)):
                if result.error:
                    errors[j] = errors[j] or result.error
                    continue
                arrays, labels = rows[j]
                arrays[f"model{i}.embedding"] = np.asarray(result.embedding, np.float32)[None]
                arrays[f"model{i}.probabilities"] = np.asarray([result.labels[n] for n in model.spec.label_names], np.float32)[None]
                arrays["duration_s"] = float(result.duration_s)
                labels.append({name: round(p, 4) for name, p in list(result.labels.items())[:TOP_LABELS]})
        results.extend((arrays, labels, error) for (arrays, labels), error in zip(rows, errors))
        group.clear()

    for read in read_ahead(paths, specs, settings["max_chunks"]):
        if read.error:  # named and counted by the caller
            if group:
                embed_group()
            results.append(({}, [], read.error))
            continue
        group.append(read)
        if sum(len(read.per_model[0].starts) for read in group) >= batch_size:
            embed_group()
    if group:
        embed_group()
    return results
