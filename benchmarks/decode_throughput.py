"""Decoding throughput of the cache build against ``librosa.load``, on the same mp3 files.

Building the cache is the one time a dataset's audio is decoded, and on MTAT (~26k mp3s) it
is the only slow data step. This measures it where it matters: a synthetic MTAT release
(real mp3 layout, written by ``datamodules.synthetic_mtat``) is decoded

* by :class:`datamodules.cache.AudioCache` with N decode worker processes (soundfile decode,
  mono mix, torchaudio resampling when the rates differ, float16 write), for each N given;
* by ``librosa.load(path, sr=<rate>, mono=True)`` in one process, the baseline: what most
  music code calls per file (soundfile decode, soxr resampling when the rates differ).

Reported: clips per second, clips per second per core (a run with N workers uses
min(N, cores) cores) and the per-core ratio cache / librosa (> 1: the cache decodes faster).
Each timing is the best of ``--repeats`` runs after the files were read once, so both sides
see a warm page cache. MTAT's mp3s are 16 kHz, so by default no resampling happens;
``--source-rate 22050`` writes the files at 22,050 Hz to time resampling as well.

    python benchmarks/decode_throughput.py [--clips 64] [--seconds 29.1] [--workers 1 2] [--source-rate 16000]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from datamodules.cache import AudioCache
from datamodules.items import Item
from datamodules.synthetic_mtat import make_synthetic_mtat


def time_cache(files: list[Path], rate: int, workers: int, cache_root: Path) -> float:
    """Seconds for one full cache build (a fresh folder each time, so nothing is reused)."""
    cache_dir = Path(tempfile.mkdtemp(dir=cache_root))
    cache = AudioCache([Item(str(f), str(f), 0) for f in files], sample_rate=rate, cache_dir=cache_dir,
                       decode_workers=workers)
    start = time.perf_counter()
    cache.build()
    return time.perf_counter() - start


def time_librosa(files: list[Path], rate: int) -> float:
    import librosa

    start = time.perf_counter()
    for f in files:
        librosa.load(f, sr=rate, mono=True)
    return time.perf_counter() - start


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _spin(_) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(2_000_000):
        x += i
    return time.perf_counter() - start


def parallel_capacity(cores: int) -> float:
    """How many cores' worth of pure CPU work ``cores`` processes get done at once.

    A virtual machine's CPUs may be hyperthreads of one core or share a quota; then N
    decode workers cannot be N times faster, and the per-core figures must be read so.
    """
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        alone = min(pool.map(_spin, [0]) for _ in range(3))[0]
        together = min(max(pool.map(_spin, range(cores))) for _ in range(3))
    return cores * alone / together


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64, help="mp3 files in the synthetic release")
    parser.add_argument("--seconds", type=float, default=29.1, help="length of each clip (MTAT: 29.1 s)")
    parser.add_argument("--source-rate", type=int, default=16000, help="rate the mp3s are written at (MTAT: 16 kHz)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate decoded to")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="cache decode workers to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="reuse/keep the synthetic release here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cores = usable_cores()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or tmp / "mtat"
        if not (data / "annotations_final.csv").is_file():
            print(f"writing {args.clips} synthetic MTAT clips of {args.seconds:g} s at {args.source_rate} Hz",
                  flush=True)
            make_synthetic_mtat(data, seed=0, n_clips=args.clips, seconds=args.seconds,
                                sample_rate=args.source_rate, n_broken=0, n_unsplit=0)
        files = sorted(data.rglob("*.mp3"))
        for f in files:  # warm the page cache for both contenders
            f.read_bytes()
        time_librosa(files[:1], args.sample_rate)  # librosa's lazy imports are not decoding time

        best: dict[str, float] = {}
        for _ in range(args.repeats):  # round-robin, so drift in machine load hits everyone alike
            best["librosa"] = min(best.get("librosa", float("inf")), time_librosa(files, args.sample_rate))
            for n in args.workers:
                key = f"cache, {n} worker{'s' if n > 1 else ''}"
                best[key] = min(best.get(key, float("inf")), time_cache(files, args.sample_rate, n, tmp))

    capacity = parallel_capacity(cores)
    n_files = len(files)
    base_per_core = n_files / best["librosa"]
    print(f"\n{n_files} mp3 clips of {args.seconds:g} s, {args.source_rate} Hz -> {args.sample_rate} Hz, "
          f"{cores} cores, best of {args.repeats}")
    print(f"machine check: {cores} processes of pure CPU work get {capacity:.2f} cores' worth done at once")
    print(f"{'decoder':24s} {'clips/s':>9s} {'cores':>6s} {'clips/s/core':>13s} {'vs librosa/core':>16s}")
    for name, seconds in best.items():
        used = 1 if name == "librosa" else min(int(name.split(", ")[1].split()[0]), cores)
        rate = n_files / seconds
        print(f"{name:24s} {rate:9.1f} {used:6d} {rate / used:13.1f} {rate / used / base_per_core:15.2f}x")


if __name__ == "__main__":
    main()
