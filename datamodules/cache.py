"""The decode-once audio cache: every clip of a dataset decoded once into one memory-mapped file.

Decoding compressed audio and resampling dominate the cost of an epoch otherwise, and reading
a window from a memory map is nearly free. :class:`AudioCache` decodes each :class:`Item`'s
source (mono, resampled) into ``audio.f16`` (float16) plus ``index.json``, in parallel worker
processes, under a file lock so that concurrent builders take turns, and renames the build
into place only when it is complete. :class:`CachedClip` is one decoded clip in it.
"""

from __future__ import annotations

import contextlib
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
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .items import Item, Target, plain_target
from .primitives.audio import AudioDecodeError, AudioSource, decode_blocks
from .primitives.chunks import chunk_samples
from .primitives.files import exclusive_lock

log = logging.getLogger(__name__)

#: Bumped whenever the cache layout or the decoding changes, so old caches are not reused.
#: 2: streamed decoding; raw-guessed, damaged-header and out-of-range files refused; min_seconds.
#: 3: the index records its sources' hash as ``cache_key`` (was ``fingerprint``).
CACHE_VERSION = 3
#: Little-endian float16: half the disk and page cache of float32, ~-66 dB relative error.
CACHE_DTYPE = np.dtype("<f2")


@dataclass(frozen=True)
class CachedClip:
    """One decoded clip in the cache: ``length`` samples starting at sample ``offset``."""

    key: str
    offset: int
    length: int
    target: Target


def default_cache_dir() -> Path:
    """``$MUSICZOO_CACHE`` if set, else ``~/.cache/musiczoo``."""
    return Path(os.environ.get("MUSICZOO_CACHE") or Path.home() / ".cache" / "musiczoo").expanduser()


class SourceSignature(NamedTuple):
    """What identifies a stored source's content cheaply: ``("file", size, mtime in ns)`` for a
    file, ``("bytes", length, blake2b hex digest)`` for encoded bytes. Part of the cache key."""

    kind: str
    size: int
    stamp: int | str

    @classmethod
    def of(cls, source: AudioSource) -> "SourceSignature":
        if isinstance(source, bytes):
            return cls("bytes", len(source), hashlib.blake2b(source, digest_size=16).hexdigest())
        st = os.stat(source)
        return cls("file", st.st_size, st.st_mtime_ns)


class DecodeJob(NamedTuple):
    """One source for a worker to decode into the float16 file ``part``; ``index`` is its item's."""

    index: int
    source: AudioSource
    sample_rate: int
    min_seconds: float
    part: str


def _decode(job: DecodeJob) -> tuple[int, int, str]:
    """Decode one source block by block into the float16 file ``job.part``; returns (index,
    samples written, why_skipped).

    Runs in a worker process; only a block is in memory at a time, so a two-hour file costs
    what a short one does (the parent appends ``part`` to the cache and deletes it). A
    failure, or a clip shorter than ``min_seconds``, is returned as a reason rather than
    raised: one bad file must never stop a build over thousands.
    """
    length = 0
    try:
        with open(job.part, "wb") as out:
            for block in decode_blocks(job.source, job.sample_rate):
                # decode_blocks refuses |x| > MAX_SAMPLE, far below float16's 65504: no inf is stored.
                out.write(block.astype(CACHE_DTYPE).tobytes())
                length += len(block)
    except AudioDecodeError as e:
        os.remove(job.part)
        return job.index, 0, str(e)
    if length < chunk_samples(job.min_seconds, job.sample_rate):
        os.remove(job.part)
        return job.index, 0, f"{SHORT}: {length / job.sample_rate:.2f} s, the minimum is {job.min_seconds:g} s"
    return job.index, length, ""


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

    The folder is named by its ``cache_key``, a hash of the sources (key and
    :class:`SourceSignature`), targets, sample rate and :data:`CACHE_VERSION`, so any change
    builds a new cache and an unchanged dataset reuses the old one. The build writes into a temporary folder that is
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
        self.items = sorted((Item(it.key, it.source, plain_target(it.target)) for it in items), key=lambda it: it.key)
        self.sample_rate = int(sample_rate)
        self.decode_workers = decode_workers or min(4, os.cpu_count() or 1)
        self.min_seconds = float(min_seconds)
        hashed = {
            "version": CACHE_VERSION, "sample_rate": self.sample_rate, "dtype": CACHE_DTYPE.str,
            "min_seconds": self.min_seconds,
            "items": [[it.key, SourceSignature.of(it.source), it.target] for it in self.items],
        }
        self.cache_key = hashlib.sha256(json.dumps(hashed).encode()).hexdigest()
        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.folder = root / f"{name}-{self.sample_rate}hz-{self.cache_key[:16]}"

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

    def _lock(self) -> contextlib.ExitStack:
        """An exclusive lock on ``.<cache name>.lock`` beside the cache, held while it is checked and built."""
        lock = contextlib.ExitStack()
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            lock.enter_context(exclusive_lock(
                self.folder.parent / f".{self.folder.name}.lock",
                on_wait=lambda: log.info("waiting for another process building audio cache %s", self.folder)))
        except PermissionError:
            raise self._not_writable() from None
        return lock

    def load(self) -> list[CachedClip]:
        """The cached clips, in key order. The cache must have been built (``ensure``)."""
        if not self.exists():
            raise FileNotFoundError(
                f"audio cache {self.folder} does not exist: call prepare_data() first "
                "(the Trainer does), or the dataset changed since it was built")
        damage = self._damage()
        if damage:
            raise RuntimeError(f"audio cache {self.folder} is damaged ({damage}): call prepare_data() to rebuild it")
        return [CachedClip(c["key"], c["offset"], c["length"], c["target"]) for c in self._read_index()["clips"]]

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
            index = {"version": CACHE_VERSION, "cache_key": self.cache_key,
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
        jobs = [DecodeJob(i, it.source, self.sample_rate, self.min_seconds, str(audio_path.with_name(f"{i}.part")))
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
                        with open(jobs[i].part, "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
                        os.remove(jobs[i].part)
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
