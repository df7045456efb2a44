"""Shared data machinery: decode once into a cache, random crops for training, chunks for evaluation.

Every dataset (GTZAN, MagnaTagATune, a folder of files, a Hugging Face dataset) reduces to a
list of :class:`Item` per split: a unique ``key``, a ``source`` soundfile can read and a
``target``. Everything else lives here, once:

* :class:`AudioCache` decodes each source once (mono, resampled) into one memory-mapped
  float16 file plus a JSON index. Decoding compressed audio and resampling dominate the cost
  of an epoch otherwise, and reading a crop from a memory map is nearly free.
* :class:`CropDataset` draws a random ``chunk_seconds`` crop per clip for training;
  :class:`ChunkDataset` returns evenly spaced chunks covering the whole clip for evaluation,
  so metrics are clip-level as in the literature.
* :class:`AudioDataModule` wires the two together with the batch contract the task relies on:

  - training batch: ``{"audio": float32 (B, S), "target": ...}``
  - evaluation/predict batch: ``{"audio": float32 (M, S), "target": ..., "clip": long (M,),
    "key": list[str] (B)}``: all chunks of the B clips concatenated, ``clip`` giving each
    chunk's clip index 0..B-1.

  ``target`` is long (B,) for ``multiclass`` and float32 (B, C) 0/1 for ``multilabel``.
  ``batch_size`` counts clips in every split.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from datamodules.primitives.audio import AudioDecodeError, AudioSource, decode_blocks
from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS, chunk_samples, chunk_starts

log = logging.getLogger(__name__)

#: Bumped whenever the cache layout or the decoding changes, so old caches are not reused.
#: 2: streamed decoding; raw-guessed, damaged-header and out-of-range files refused; min_seconds.
CACHE_VERSION = 2
#: Little-endian float16: half the disk and page cache of float32, ~-66 dB relative error.
CACHE_DTYPE = np.dtype("<f2")
SPLITS = ("train", "val", "test", "predict")

Target = Union[int, Sequence[int]]


@dataclass(frozen=True)
class Item:
    """One clip of a dataset, before decoding.

    ``key`` is the clip's unique id (for folder datasets, its path relative to the data
    folder, so a cache survives moving the folder). ``source`` is a file path or the encoded
    bytes of the file. ``target`` is the class index (multiclass) or a 0/1 sequence with one
    entry per label (multilabel).
    """

    key: str
    source: AudioSource
    target: Target


@dataclass(frozen=True)
class Clip:
    """One decoded clip in the cache: ``length`` samples starting at sample ``offset``."""

    key: str
    offset: int
    length: int
    target: Target


#: Written by the synthetic-data generators into the dataset root, so every result, checkpoint
#: and model card made from such data can say it was synthetic, whatever the folder is called.
SYNTHETIC_MARKER = "SYNTHETIC_DATA.txt"


def mark_synthetic(root: str | os.PathLike, what: str) -> None:
    Path(root, SYNTHETIC_MARKER).write_text(f"{what}\nGenerated audio, not recorded music: results on it test the pipeline only.\n")


def is_synthetic(root: str | os.PathLike) -> bool:
    """Whether ``root`` (or its parent, when root points at e.g. ``genres_original``) holds the marker."""
    root = Path(root).expanduser()
    return (root / SYNTHETIC_MARKER).is_file() or (root.parent / SYNTHETIC_MARKER).is_file()


def default_cache_dir() -> Path:
    """``$MUSICZOO_CACHE`` if set, else ``~/.cache/musiczoo``."""
    return Path(os.environ.get("MUSICZOO_CACHE") or Path.home() / ".cache" / "musiczoo").expanduser()


def _source_signature(source: AudioSource) -> list:
    """What identifies a source's content cheaply: size and mtime for a file, a hash for bytes."""
    if isinstance(source, bytes):
        return ["bytes", len(source), hashlib.blake2b(source, digest_size=16).hexdigest()]
    st = os.stat(source)
    return ["file", st.st_size, st.st_mtime_ns]


def _decode(job: tuple[int, AudioSource, int, float, str]) -> tuple[int, int, str]:
    """Decode one source block by block into the float16 file ``part``; returns (index,
    samples written, why_skipped).

    Runs in a worker process; only a block is in memory at a time, so a two-hour file costs
    what a short one does (the parent appends ``part`` to the cache and deletes it). A
    failure, or a clip shorter than ``min_seconds``, is returned as a reason rather than
    raised: one bad file must never stop a build over thousands.
    """
    i, source, sample_rate, min_seconds, part = job
    length = 0
    try:
        with open(part, "wb") as out:
            for block in decode_blocks(source, sample_rate):
                # decode_blocks refuses |x| > zoo.audio.MAX_SAMPLE, far below float16's 65504: no inf is stored.
                out.write(block.astype(CACHE_DTYPE).tobytes())
                length += len(block)
    except AudioDecodeError as e:
        os.remove(part)
        return i, 0, str(e)
    if length < chunk_samples(min_seconds, sample_rate):
        os.remove(part)
        return i, 0, f"{SHORT}: {length / sample_rate:.2f} s, the minimum is {min_seconds:g} s"
    return i, length, ""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def _init_decode_worker():
    # One intra-op thread per worker: the parallelism is across files.
    torch.set_num_threads(1)


#: How a skip reason for a clip below ``min_seconds`` starts; any other reason is an unreadable file.
SHORT = "too short"


def _summary(skipped: list[dict], total: int) -> str:
    """One line: how many files were skipped, of which kind, and the first ten by name."""
    short = sum(s["reason"].startswith(SHORT) for s in skipped)
    names = ", ".join(f"{s['key']} ({s['reason']})" for s in skipped[:10])
    more = f", ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return (f"skipped {len(skipped)} of {total} files ({len(skipped) - short} unreadable, {short} too short): "
            f"{names}{more}")


class CacheNotWritableError(PermissionError):
    """The cache directory cannot be written; the message names it (not a temporary folder)."""


#: File in a build folder naming its builder (``host pid``), see ``AudioCache._remove_stale_builds``.
BUILDER_FILE = "builder"


class AudioCache:
    """All clips of a dataset decoded once: ``audio.f16`` (memory-mapped) + ``index.json``.

    The folder is named by a fingerprint of the sources (key, size, mtime or content hash),
    targets, sample rate and :data:`CACHE_VERSION`, so any change builds a new cache and an
    unchanged dataset reuses the old one. The build writes into a temporary folder that is
    renamed into place only when complete: an interrupted build never leaves a cache that
    looks valid. Unreadable or empty sources, and clips shorter than ``min_seconds``, are
    skipped with a warning naming each one and recorded in the index, so a reused cache
    reports them too. Files are decoded block by block, so memory does not grow with duration.
    """

    def __init__(self, items: Sequence[Item], *, sample_rate: int, name: str = "audio",
                 cache_dir: str | os.PathLike | None = None, decode_workers: int | None = None,
                 min_seconds: float = 0.0):
        repeated = sorted(k for k, n in Counter(it.key for it in items).items() if n > 1)
        if repeated:
            raise ValueError(f"{len(repeated)} clip keys appear more than once: {repeated[:5]}")
        self.items = sorted((Item(it.key, it.source, _plain_target(it.target)) for it in items), key=lambda it: it.key)
        self.sample_rate = int(sample_rate)
        self.decode_workers = decode_workers or min(4, os.cpu_count() or 1)
        self.min_seconds = float(min_seconds)
        fingerprint = {
            "version": CACHE_VERSION, "sample_rate": self.sample_rate, "dtype": CACHE_DTYPE.str,
            "min_seconds": self.min_seconds,
            "items": [[it.key, _source_signature(it.source), it.target] for it in self.items],
        }
        self.fingerprint = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()
        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.folder = root / f"{name}-{self.sample_rate}hz-{self.fingerprint[:16]}"

    @property
    def audio_file(self) -> Path:
        return self.folder / "audio.f16"

    @property
    def index_file(self) -> Path:
        return self.folder / "index.json"

    def exists(self) -> bool:
        # The folder only ever appears by an atomic rename of a finished build.
        return self.index_file.is_file()

    def ensure(self) -> None:
        """Build the cache unless it exists whole; either way report the skipped files.

        Processes that ask for the same cache at the same moment (the ranks of several nodes
        on shared storage, two jobs of a grid) take turns on a file lock next to it: the first
        builds, the others wait and then reuse its cache. The atomic rename of each build is
        the second line of defence where the file system ignores locks. Leftovers of killed
        builds are removed first, and a cache whose files no longer match its index (a
        truncated ``audio.f16``, a damaged index) is rebuilt with a warning.
        """
        with self._lock():
            self._remove_stale_builds()
            damage = self._damage() if self.exists() else None
            if damage:
                log.warning("audio cache %s is damaged (%s); rebuilding it", self.folder, damage)
                broken = self.folder.with_name(f".{self.folder.name}.broken-{os.getpid()}")
                os.replace(self.folder, broken)  # out of the way at once, so no reader sees it half deleted
                shutil.rmtree(broken, ignore_errors=True)
            if self.exists():
                index = self._read_index()
                log.info("reusing audio cache %s (%d clips)", self.folder, len(index["clips"]))
                if index["skipped"]:
                    log.warning(_summary(index["skipped"], len(index["clips"]) + len(index["skipped"])))
            else:
                self.build()

    def _not_writable(self) -> CacheNotWritableError:
        return CacheNotWritableError(f"cache directory {self.folder.parent} is not writable: pass a writable "
                                     "cache_dir or set $MUSICZOO_CACHE")

    @contextlib.contextmanager
    def _lock(self):
        """An exclusive ``flock`` on ``.<cache name>.lock`` beside the cache, held while it is checked and built."""
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder.parent / f".{self.folder.name}.lock", "a")
        except PermissionError:
            raise self._not_writable() from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building audio cache %s", self.folder)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self) -> list[Clip]:
        """The cached clips, in key order. The cache must have been built (``ensure``)."""
        if not self.exists():
            raise FileNotFoundError(
                f"audio cache {self.folder} does not exist: call prepare_data() first "
                "(the Trainer does), or the dataset changed since it was built")
        damage = self._damage()
        if damage:
            raise RuntimeError(f"audio cache {self.folder} is damaged ({damage}): call prepare_data() to rebuild it")
        return [Clip(c["key"], c["offset"], c["length"], c["target"]) for c in self._read_index()["clips"]]

    def _read_index(self) -> dict:
        return json.loads(self.index_file.read_text())

    def _damage(self) -> str | None:
        """Why the cache's files do not match its index, or None. A memory map of a short
        ``audio.f16`` would otherwise fail later with numpy's cryptic "expanded size"."""
        try:
            clips = self._read_index()["clips"]
        except (OSError, ValueError, KeyError) as e:
            return f"unreadable index: {e}"
        expected = sum(c["length"] for c in clips) * CACHE_DTYPE.itemsize
        actual = self.audio_file.stat().st_size if self.audio_file.is_file() else None
        if actual != expected:
            return f"audio.f16 holds {actual} bytes, its index describes {expected}"
        return None

    def build(self) -> None:
        """Decode every source with ``decode_workers`` processes and write the cache atomically."""
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.building-", dir=self.folder.parent))
        except PermissionError:
            raise self._not_writable() from None
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            # Who builds here, so a later start removes this folder only once its builder is gone.
            (tmp / BUILDER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
            clips, skipped = self._decode_into(tmp / "audio.f16")
            index = {"version": CACHE_VERSION, "fingerprint": self.fingerprint,
                     "sample_rate": self.sample_rate, "dtype": CACHE_DTYPE.str,
                     "clips": clips, "skipped": skipped}
            (tmp / "index.json").write_text(json.dumps(index))
            if not clips:
                raise RuntimeError(f"none of the {len(self.items)} files could be decoded; "
                                   + _summary(skipped, len(self.items)))
            try:
                os.replace(tmp, self.folder)
            except OSError:
                if not self.exists():  # another process finishing the same build first is fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if skipped:
            log.warning(_summary(skipped, len(self.items)))
        log.info("built audio cache %s (%d clips)", self.folder, len(clips))

    def _remove_stale_builds(self, max_age_s: float = 6 * 3600, min_age_s: float = 60) -> None:
        """Delete build folders of this cache left by a killed process (SIGKILL skips the
        cleanup; a real MTAT build is tens of GB).

        A folder whose builder (pid recorded in it, on this host) is gone is removed once it
        is ``min_age_s`` old; a build still running is never touched. A folder without a
        readable builder of this host (another machine sharing the cache, or an older
        version) is removed only when untouched for ``max_age_s``.
        """
        now, here = time.time(), socket.gethostname()
        for stale in self.folder.parent.glob(f".{self.folder.name}.building-*"):
            builder = stale / BUILDER_FILE
            try:
                host, pid = builder.read_text().split()
                gone = host == here and now - builder.stat().st_mtime > min_age_s and not _process_alive(int(pid))
            except (OSError, ValueError):
                host = ""
            if host != here:
                try:
                    gone = now - max([stale.stat().st_mtime] + [p.stat().st_mtime for p in stale.iterdir()]) > max_age_s
                except FileNotFoundError:
                    continue  # finished or removed meanwhile
            if gone:
                log.warning("removing an interrupted cache build %s", stale)
                shutil.rmtree(stale, ignore_errors=True)

    def _decode_into(self, audio_path: Path) -> tuple[list[dict], list[dict]]:
        """Decode every item into ``audio_path``: each one streams into a part file of its own
        (workers cannot know where it starts in the cache), appended in key order."""
        jobs = [(i, it.source, self.sample_rate, self.min_seconds, str(audio_path.with_name(f"{i}.part")))
                for i, it in enumerate(self.items)]
        clips, skipped, offset = [], [], 0
        progress = tqdm(total=len(jobs), desc=f"decoding to {self.sample_rate} Hz", unit="file")
        with open(audio_path, "wb") as out, progress:
            if self.decode_workers > 1 and len(jobs) > 1:
                # fork: workers start instantly and inherit the imported torch/soundfile.
                method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
                pool = multiprocessing.get_context(method).Pool(self.decode_workers, _init_decode_worker)
                results = pool.imap(_decode, jobs, chunksize=4)
            else:
                # In-process decoding: one intra-op thread, as in the workers; torch's
                # multi-threaded resampler is ~8x slower per clip on short clips.
                pool, results = None, map(_decode, jobs)
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
            try:
                for i, length, reason in results:  # in order, so offsets are deterministic
                    item = self.items[i]
                    if reason:
                        log.warning("skipping %s: %s", item.key, reason)
                        skipped.append({"key": item.key, "reason": reason})
                    else:
                        with open(jobs[i][-1], "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
                        os.remove(jobs[i][-1])
                        clips.append({"key": item.key, "offset": offset, "length": length, "target": item.target})
                        offset += length
                    progress.update()
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
                else:
                    torch.set_num_threads(threads)
        return clips, skipped


def _plain_target(target: Target) -> int | list[int]:
    """A target as JSON-ready ints, so equal targets compare and hash equal whatever their type."""
    return int(target) if isinstance(target, (int, np.integer)) else [int(v) for v in target]


def target_tensor(target: Target) -> torch.Tensor:
    """long scalar for a class index, float32 0/1 vector for a multilabel target."""
    if isinstance(target, (int, np.integer)):
        return torch.tensor(int(target), dtype=torch.long)
    return torch.tensor(target, dtype=torch.float32)


class _CacheDataset(Dataset):
    """Reads fixed-length windows of cached clips as float32, zero-padded past the end.

    The memory map is opened lazily in each process (and dropped when pickled to a
    DataLoader worker), so workers share the page cache instead of copying the array.
    """

    def __init__(self, audio_file: str | os.PathLike, clips: Sequence[Clip], num_samples: int):
        self.audio_file = str(audio_file)
        self.clips = list(clips)
        self.num_samples = int(num_samples)
        self._audio: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self):
        return {**self.__dict__, "_audio": None}

    @property
    def audio(self) -> np.memmap:
        """The cache's samples, memory-mapped on first use in this process."""
        if self._audio is None:
            self._audio = np.memmap(self.audio_file, dtype=CACHE_DTYPE, mode="r")
        return self._audio

    def _window(self, clip: Clip, start: int) -> torch.Tensor:
        stop = min(start + self.num_samples, clip.length)
        out = torch.zeros(self.num_samples, dtype=torch.float32)
        out[: stop - start] = torch.from_numpy(self.audio[clip.offset + start: clip.offset + stop].astype(np.float32))
        return out


class CropDataset(_CacheDataset):
    """Training: one random crop of ``num_samples`` per clip and epoch.

    Crop positions come from torch's RNG, which DataLoader seeds per worker and
    ``seed_everything`` makes reproducible. The DataLoader fetches a whole batch with
    :meth:`__getitems__` (pass :func:`collate_batch` as its ``collate_fn``): the crops are
    copied as float16 into one array and converted to float32 in one call, about 7x less
    time per crop than converting each crop on its own (``benchmarks/PERF.md``).
    """

    def _start(self, clip: Clip) -> int:
        return int(torch.randint(0, max(clip.length - self.num_samples, 0) + 1, ()))

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        return {"audio": self._window(clip, self._start(clip)), "target": target_tensor(clip.target)}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        """The batch of ``indices``, already collated: ``{"audio": (B, num_samples), "target": (B, ...)}``."""
        clips = [self.clips[i] for i in indices]
        crops = np.zeros((len(clips), self.num_samples), dtype=CACHE_DTYPE)
        for row, clip in zip(crops, clips):
            start = self._start(clip)  # the same draws, in the same order, as item by item
            stop = min(start + self.num_samples, clip.length)
            row[: stop - start] = self.audio[clip.offset + start: clip.offset + stop]
        return {"audio": torch.from_numpy(crops).float(), "target": torch.stack([target_tensor(c.target) for c in clips])}


def collate_batch(batch: dict) -> dict:
    """``collate_fn`` of a dataset whose ``__getitems__`` returns a collated batch."""
    return batch


class ChunkDataset(_CacheDataset):
    """Evaluation: all evenly spaced chunks of one clip (see :func:`chunk_starts`)."""

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        audio = torch.stack([self._window(clip, int(s)) for s in chunk_starts(clip.length, self.num_samples)])
        return {"audio": audio, "target": target_tensor(clip.target), "key": clip.key}


def collate_chunks(examples: list[dict]) -> dict:
    """Concatenate the chunks of several clips; ``clip`` maps each chunk to its clip."""
    counts = torch.tensor([len(e["audio"]) for e in examples])
    return {
        "audio": torch.cat([e["audio"] for e in examples]),
        "target": torch.stack([e["target"] for e in examples]),
        "clip": torch.repeat_interleave(torch.arange(len(examples)), counts),
        "key": [e["key"] for e in examples],
    }


class AudioDataModule(L.LightningDataModule):
    """Base of every data module: a subclass only says what the clips of each split are.

    Subclasses set ``dataset_name``, set ``label_names`` in ``__init__`` (and ``task =
    "multilabel"`` for tagging), implement :meth:`split_items` and name their split in
    :attr:`split_name`; a subclass's ``__init__`` declares only its own arguments and passes
    ``**kwargs`` on (LightningCLI still lists and type-checks the base arguments). ``prepare_data`` builds (or reuses) the cache of all
    splits' items; ``setup`` reads its index; the loaders follow the batch contract in the
    module docstring. Files skipped by the cache are left out of their split.

    Args:
        root: where the dataset lives.
        sample_rate: rate every clip is resampled to (the model's input rate).
        chunk_seconds: length of training crops and evaluation chunks (the model's chunk length).
        batch_size: clips per batch, for training and evaluation alike.
        num_workers: DataLoader worker processes.
        cache_dir: where decoded caches live (default ``$MUSICZOO_CACHE`` or ``~/.cache/musiczoo``).
        decode_workers: processes decoding files while building the cache (default min(4, CPUs)).
        seed: seed of any random split the subclass draws.
        prepare_data_per_node: build the cache once per node (Lightning's default, for a
            node-local ``cache_dir``); ``False`` builds it once on global rank 0, for a
            ``cache_dir`` on storage that all nodes share.
        min_clip_seconds: clips shorter than this, or than half of ``chunk_seconds`` if that is
            less, are skipped by the cache (named and counted): a crop that is mostly zero padding
            teaches the model silence, not the label, and a clip of half a chunk or more never
            gives one. 0 keeps every clip.
    """

    task: str = "multiclass"
    #: The dataset's name in provenance, results and cache folder names.
    dataset_name: str = "audio"

    def __init__(
        self,
        root: str,
        sample_rate: int = 22050,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        batch_size: int = 16,
        num_workers: int = 0,
        cache_dir: str | None = None,
        decode_workers: int | None = None,
        seed: int = 0,
        min_clip_seconds: float = 1.0,
        prepare_data_per_node: bool = True,
    ):
        super().__init__()
        # The init arguments of the whole class chain (e.g. a subclass's split), recorded in checkpoints.
        self.save_hyperparameters()
        if chunk_seconds <= 0 or sample_rate <= 0 or batch_size <= 0:
            raise ValueError("chunk_seconds, sample_rate and batch_size must be positive")
        if min_clip_seconds < 0:
            raise ValueError(f"min_clip_seconds must not be negative, got {min_clip_seconds}")
        self.root = Path(root).expanduser()
        self.sample_rate = int(sample_rate)
        self.chunk_seconds = float(chunk_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self.seed = int(seed)
        self.min_clip_seconds = float(min_clip_seconds)
        self.prepare_data_per_node = bool(prepare_data_per_node)
        self.label_names: list[str] = []
        self._clips: dict[str, list[Clip]] = {}
        self._audio_file: Path | None = None

    # ---- what a subclass supplies ------------------------------------------------
    def split_items(self) -> dict[str, list[Item]]:
        """Items of each split: keys ``train``, ``val``, ``test`` and optionally ``predict``
        (which defaults to ``test``). Called in ``prepare_data`` and ``setup``."""
        raise NotImplementedError

    # ---- derived -------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def synthetic(self) -> bool:
        """True for data written by ``musiczoo synth`` (see :data:`SYNTHETIC_MARKER`)."""
        return is_synthetic(self.root)

    @property
    def split_name(self) -> str:
        """How the clips were split, as results and model cards should name it."""
        raise NotImplementedError

    @property
    def provenance(self) -> dict:
        """Where results come from: ``{"dataset", "split", "synthetic"}``.

        The one owner of these facts: the CLI links it into the task (so checkpoints record
        it), published configs and model cards copy it from there, and the benchmark runner
        reads it for the leaderboard.
        """
        return {"dataset": self.dataset_name, "split": self.split_name, "synthetic": self.synthetic}

    @property
    def chunk_size(self) -> int:
        """Samples per training crop and evaluation chunk."""
        return chunk_samples(self.chunk_seconds, self.sample_rate)

    def _splits_and_cache(self) -> tuple[dict[str, list[Item]], AudioCache]:
        splits = self.split_items()
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; expected a subset of {SPLITS}")
        union: dict[str, Item] = {}
        for name, items in splits.items():
            for it in items:
                self._check_target(it)
                it = Item(it.key, it.source, _plain_target(it.target))
                if union.setdefault(it.key, it) != it:
                    raise ValueError(f"clip {it.key!r} appears twice with different sources or targets")
        cache = AudioCache(list(union.values()), sample_rate=self.sample_rate, name=self.dataset_name,
                           cache_dir=self.cache_dir, decode_workers=self.decode_workers,
                           min_seconds=min(self.min_clip_seconds, self.chunk_seconds / 2))
        return splits, cache

    def _check_target(self, it: Item):
        is_index = isinstance(it.target, (int, np.integer))
        if self.task == "multiclass":
            if not (is_index and 0 <= it.target < self.num_classes):
                raise ValueError(f"{it.key}: target {it.target!r} is not a class index below {self.num_classes}")
        elif is_index or len(it.target) != self.num_classes or any(v not in (0, 1) for v in it.target):
            raise ValueError(f"{it.key}: multilabel target must be {self.num_classes} values of 0/1, got {it.target!r}")

    # ---- Lightning hooks -------------------------------------------------------------
    def prepare_data(self):
        self._splits_and_cache()[1].ensure()

    def setup(self, stage: str | None = None):
        splits, cache = self._splits_and_cache()
        by_key = {c.key: c for c in cache.load()}
        self._audio_file = cache.audio_file
        self._clips = {name: [by_key[it.key] for it in items if it.key in by_key] for name, items in splits.items()}
        self._clips.setdefault("predict", self._clips.get("test", []))
        log.info("%s: %s clips", type(self).__name__,
                 ", ".join(f"{name} {len(c)}" for name, c in self._clips.items()))
        short = sum(c.length < self.chunk_size for c in by_key.values())
        if short > len(by_key) / 2:
            log.warning("chunk_seconds %g s is longer than %d of the %d clips of %s: their crops and chunks are "
                        "zero-padded; a shorter chunk_seconds fits this dataset", self.chunk_seconds, short,
                        len(by_key), self.dataset_name)

    def clips(self, split: str) -> list[Clip]:
        """The decoded clips of ``split`` (after ``setup``)."""
        if split not in self._clips:
            raise RuntimeError(f"split {split!r} is not available: call prepare_data() and setup() first")
        return self._clips[split]

    def _loader(self, dataset: Dataset, shuffle: bool, collate_fn=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), collate_fn=collate_fn)

    def train_dataloader(self) -> DataLoader:
        clips = self.clips("train")
        # A ragged last batch of one clip breaks BatchNorm; keep it only if it is all there is.
        return self._loader(CropDataset(self._audio_file, clips, self.chunk_size), shuffle=True,
                            drop_last=len(clips) > self.batch_size, collate_fn=collate_batch)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = ChunkDataset(self._audio_file, self.clips(split), self.chunk_size)
        return self._loader(dataset, shuffle=False, collate_fn=collate_chunks)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
