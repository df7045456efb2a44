"""Library vectors as rows: unit-length normalising, and float32 ``.npy`` files of rows read and
written a batch at a time, so a library of ten million tracks (10 GB of 256-d vectors) is
indexed without ever being in memory whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH_BYTES = 100 * 2**20
"""Bytes of rows read, normalised and added to faiss at a time when building from a file
(100,000 rows of 256-d float32, 22,000 of the 1152-d fingerprint): small beside the index, and
the same whatever the width, large enough that faiss's per-call cost is nothing."""


def batch_rows(dim: int) -> int:
    """Rows of ``dim`` float32 columns in :data:`BATCH_BYTES`."""
    return max(1, BATCH_BYTES // (4 * dim))


def normalize(vectors, *, what: str = "vectors") -> np.ndarray:
    """``vectors`` as float32, C-contiguous (faiss's layout), each row scaled to length 1.

    Unit rows make the inner product the cosine similarity. An all-zero row stays zero
    rather than becoming NaN: it has no direction, so it is similar to nothing (0 with
    everything). The input is never modified. ``what`` names the input in error messages.

    Raises ValueError for an input that is not 2-D, has no rows or no columns, or holds
    NaN or infinite values (also values too large for float32).
    """
    rows = np.array(vectors, dtype=np.float32, order="C")
    if rows.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (one row per track), got shape {rows.shape}")
    if rows.size == 0:
        raise ValueError(f"{what} is empty (shape {rows.shape}): need at least one row and one column")
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(f"{what} contain NaN or infinite values (first in row {int(np.argmin(finite))})")
    lengths = np.linalg.norm(rows, axis=1, keepdims=True)
    lengths[lengths == 0] = 1
    rows /= lengths
    return rows


def npy_rows(path: Path, what: str) -> np.ndarray:
    """``path``, a 2-D float32 ``.npy`` file, memory-mapped read-only; ValueError naming it otherwise."""
    try:
        rows = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise ValueError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a NumPy .npy file ({what}): {e}") from None
    if rows.ndim != 2 or rows.dtype != np.float32 or 0 in rows.shape:
        raise ValueError(f"{path}: {what} must hold a 2-D float32 array of at least one row and "
                         f"column, not {rows.dtype} of shape {rows.shape}")
    return rows


def unit_batches(source: np.ndarray | Path):
    """The unit rows of ``source`` (unit rows in memory, or a ``.npy`` file of any rows,
    normalised here), :data:`BATCH_BYTES` at a time.

    A file is mapped afresh for each batch and unmapped after: the pages of a map that
    were read count in the process's RSS while it stays mapped, so one map read from end
    to end would grow RSS by the file's size."""
    if not isinstance(source, Path):
        step = batch_rows(source.shape[1])
        for start in range(0, len(source), step):
            yield np.ascontiguousarray(source[start:start + step])
        return
    size, dim = npy_rows(source, "library vectors file").shape
    step = batch_rows(dim)
    for start in range(0, size, step):
        rows = npy_rows(source, "library vectors file")
        batch = normalize(rows[start:start + step], what=f"{source} rows {start:,} onwards")
        del rows
        yield batch


def sample_rows(source: np.ndarray | Path, size: int, count: int, seed: int) -> np.ndarray:
    """A seeded sample of ``count`` unit rows of ``source`` (all of them if fewer), gathered
    batch by batch: the same rows whether ``source`` is in memory or in a file."""
    chosen = np.sort(np.random.default_rng(seed).choice(size, min(count, size), replace=False))
    parts, start = [], 0
    for batch in unit_batches(source):
        here = chosen[(chosen >= start) & (chosen < start + len(batch))]
        parts.append(batch[here - start])
        start += len(batch)
    return np.concatenate(parts)


def write_npy(path: Path, shape: tuple[int, int], batches) -> None:
    """Write ``batches`` of float32 rows, in order, as a ``.npy`` file of ``shape``: plain
    writes, so (unlike filling a writable memory map) the process's RSS does not grow."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_2_0(file, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
        for batch in batches:
            np.ascontiguousarray(batch, dtype="<f4").tofile(file)
