"""Other versions at library scale: ``musiczoo recommend --versions`` against similarity and duplicates.

A library of ``--tracks`` tracks (10,000 by default) with a genre model and a version
identification model, as ``musiczoo index GENRE_MODEL VERSION_MODEL MUSIC_DIR`` makes it, is
queried three ways on the same library, and each is timed against the others (the named
baselines: ``--track`` similarity, the kind of music, and ``--duplicates``, the same recording):

* end to end, as a user runs it: ``python -m zoo.cli recommend LIB --versions ID`` (and
  ``--track ID``, ``--duplicates``) in a fresh interpreter each time, start-up, imports and
  opening the library included; the median wall time of ``--runs`` runs, the kinds interleaved
  so a busy spell on the cores slows each alike; beside them the start-up floor,
  ``musiczoo recommend --help`` (the interpreter and the imports, no library opened);
* in process: ``Library.versions`` and ``Library.similar`` (the default feature, ``combined``)
  of ``--queries`` tracks one at a time after a few untimed ones (median and p99 ms), and
  ``Library.duplicates`` (a pass over the whole library, not a query of one track: median of
  ``--runs`` passes);
* as a check that the vectors are what the queries claim: the share of a track's other
  performances among its top 10, by ``versions`` and by ``combined``.

The vectors are **synthetic**, in the real widths (``Library.from_vectors``): the genre model is
the study's ResNet+GRU on Mel (256-d embedding, 10 genres), the version model the ResNet+GRU on
the constant-Q spectrogram of ``benchmarks/configs/covers_synthetic_tiny.yaml`` (256-d, here 1,000
training works); both untrained, only their shapes matter. Genre embeddings are drawn from 200
Gaussian clusters; each work (2 to 6 performances) has a random direction, and its performances
lie at spread ``--spread`` around it (cosine about 0.5 between performances of one work, 0
otherwise), plus a shared offset (the common direction of raw pooled embeddings, which the
library's centring removes). Fingerprints are random, with ``--duplicates-planted`` pairs made
near-identical. Tracks are records only (``synthetic/...mp3``, 4 minutes each); no query reads
audio.

    python benchmarks/versions_scale.py [--tracks 10000] [--runs 5] [--queries 200] [--threads N] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
K = 10
SAMPLE_RATE = 16000
TRAINING_WORKS = 1000


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def models():
    """The genre model and the version model, untrained, in the study's shapes."""
    import torch

    from zoo.factory import create_model

    torch.manual_seed(0)
    genre = create_model("resnet_gru", transform="mel", num_classes=10, sample_rate=SAMPLE_RATE, chunk_seconds=3.0)
    versions = create_model("resnet_gru", transform="cqt", num_classes=TRAINING_WORKS, sample_rate=SAMPLE_RATE,
                            chunk_seconds=4.0, task="versions", label_names=[f"W_{i:04d}" for i in range(TRAINING_WORKS)],
                            channels=[16, 32, 64, 64], transform_params={"n_fft": 4096, "hop_length": 512})
    return genre.eval(), versions.eval()


def build(work: Path, tracks: int, spread: float, planted: int, seed: int) -> tuple[list[int], float]:
    """The library in ``work/library`` (its music folder ``work/music``, empty); returns each row's
    work, in the library's row order, and the seconds ``Library.from_vectors`` took."""
    from zoo.recommend.library import Library, Track

    genre, versions = models()
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < tracks:
        sizes.append(int(rng.integers(2, 7)))
    sizes[-1] -= sum(sizes) - tracks
    if sizes[-1] < 2:  # a work of one performance has no other version: give it to the one before
        sizes[-2] += sizes.pop()
    works = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(works)

    def clustered(width: int, labels: np.ndarray, noise: float) -> np.ndarray:
        centres = rng.standard_normal((labels.max() + 1, width), dtype=np.float32)
        offset = 3.0 * rng.standard_normal(width, dtype=np.float32)
        return offset + centres[labels] + noise * rng.standard_normal((len(labels), width), dtype=np.float32)

    styles = rng.integers(0, 200, tracks)
    arrays = {"model0.embedding": clustered(genre.embed_dim, styles, 0.5),
              "model0.probabilities": rng.dirichlet(np.ones(10), tracks).astype(np.float32),
              "model1.embedding": clustered(versions.embed_dim, works, spread),
              "model1.probabilities": rng.dirichlet(np.full(TRAINING_WORKS, 0.05), tracks).astype(np.float32),
              "fingerprint": rng.standard_normal((tracks, 1152), dtype=np.float32)}
    pairs = rng.choice(tracks, size=(planted, 2), replace=False)
    arrays["fingerprint"][pairs[:, 1]] = arrays["fingerprint"][pairs[:, 0]] + 0.05 * rng.standard_normal(
        (planted, 1152), dtype=np.float32)  # the same recording twice, re-encoded
    names = [genre.spec.label_names, versions.spec.label_names]

    def top(i: int, m: int) -> dict[str, float]:
        probabilities = arrays[f"model{m}.probabilities"][i]
        return {names[m][j]: round(float(probabilities[j]), 4) for j in np.argsort(-probabilities)[:5]}

    records = [Track(f"synthetic/{i // 1000:04d}/{i:08d}.mp3", 7_000_000 + i, 1_700_000_000_000_000_000 + i,
                     f"{i:064x}", 240.0, [top(i, 0), top(i, 1)]) for i in range(tracks)]
    (work / "music").mkdir()
    start = time.perf_counter()
    Library.from_vectors(work / "library", [genre, versions], work / "music", records, arrays, max_chunks=4)
    return works.tolist(), time.perf_counter() - start  # the ids sort as the rows were given


def cold(library: Path, args: list[str], env: dict) -> float:
    """Wall seconds of one ``musiczoo recommend`` in a fresh interpreter (a failure stops the run)."""
    start = time.perf_counter()
    given = args if args == ["--help"] else [str(library), *args]
    subprocess.run([sys.executable, "-m", "zoo.cli", "recommend", *given], check=True, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def per_query_ms(query, refs: list[str]) -> np.ndarray:
    for ref in refs[:10]:  # untimed: the index loaded, pages mapped in
        query(ref)
    seconds = []
    for ref in refs:
        start = time.perf_counter()
        query(ref)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="cold command runs of each kind (median)")
    parser.add_argument("--queries", type=int, default=200, help="in-process queries of each kind (median, p99)")
    parser.add_argument("--spread", type=float, default=1.0, help="performances' spread around their work's direction")
    parser.add_argument("--duplicates-planted", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="threads for faiss and NumPy, here and in the commands (default: all)")
    parser.add_argument("--dir", default=None, help="where the library is written (default: a temporary folder)")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        env.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        works, built = build(work, args.tracks, args.spread, args.duplicates_planted, args.seed)
        library_path = work / "library"
        from zoo.recommend.library import Library

        library = Library.open(library_path)
        print(f"library: {len(library.tracks):,} tracks, models {', '.join(library.tasks)} (resnet_gru/mel, "
              f"resnet_gru/cqt), features {', '.join(library.features)}; SYNTHETIC vectors "
              f"({max(works) + 1:,} works of 2-6 performances, spread {args.spread:g}); written in {built:.1f} s\n")
        rng = np.random.default_rng(args.seed + 1)
        ids = [library.tracks[int(r)].id for r in rng.choice(len(library.tracks), args.queries, replace=False)]

        # -- end to end: a fresh interpreter per command, the kinds interleaved
        commands = {"--versions ID": lambda ref: ["--versions", ref, "-k", str(K)],
                    "--track ID (combined)": lambda ref: ["--track", ref, "-k", str(K)],
                    "--duplicates": lambda ref: ["--duplicates"],
                    "--help (start-up floor)": lambda ref: ["--help"]}
        walls = {name: [] for name in commands}
        for run in range(args.runs):
            for name, command in commands.items():
                walls[name].append(cold(library_path, command(ids[run]), env))
        wall = {name: statistics.median(seconds) for name, seconds in walls.items()}

        # -- in process
        versions_ms = per_query_ms(lambda ref: library.versions(ref, k=K), ids)
        similar_ms = per_query_ms(lambda ref: library.similar(ref, k=K), ids)
        passes = []
        for _ in range(max(1, args.runs // 2)):
            start = time.perf_counter()
            pairs = library.duplicates()
            passes.append(time.perf_counter() - start)
        duplicates_ms = statistics.median(passes) * 1e3

        # -- what they find: the share of a track's other performances among its top 10
        performances: dict[int, set[int]] = {}
        for row, work_of_row in enumerate(works):
            performances.setdefault(work_of_row, set()).add(row)

        def found(query) -> float:
            shares = []
            for ref in ids:
                row = library.row[ref]
                others = performances[works[row]] - {row}
                shares.append(len(others & {library.row[m.id] for m in query(ref)}) / min(len(others), K))
            return float(np.mean(shares))

        recall_versions = found(lambda ref: library.versions(ref, k=K))
        recall_similar = found(lambda ref: library.similar(ref, k=K))

    v, s = wall["--versions ID"], wall["--track ID (combined)"]
    print(f"end to end, `musiczoo recommend LIB ...` in a fresh interpreter, median of {args.runs} runs:")
    print(f"{'command':<24} {'median s':>9} {'min s':>7} {'max s':>7} {'--versions / this':>18}")
    for name, seconds in walls.items():
        print(f"{name:<24} {wall[name]:>9.2f} {min(seconds):>7.2f} {max(seconds):>7.2f} {v / wall[name]:>17.2f}x")
    print(f"\nin process, one query at a time, top-{K}, {args.queries} tracks (Library.open once):")
    print(f"{'query':<34} {'p50 ms':>8} {'p99 ms':>8} {'--versions / this':>18}")
    p50 = float(np.median(versions_ms))
    print(f"{'Library.versions':<34} {p50:>8.3f} {np.percentile(versions_ms, 99):>8.3f} {1.0:>17.2f}x")
    print(f"{'Library.similar (combined)':<34} {np.median(similar_ms):>8.3f} {np.percentile(similar_ms, 99):>8.3f} "
          f"{p50 / np.median(similar_ms):>17.2f}x")
    print(f"{'Library.duplicates (whole library)':<34} {duplicates_ms:>8.1f} {'':>8} {p50 / duplicates_ms:>17.4f}x  "
          f"{len(pairs)} pairs ({args.duplicates_planted} planted)")
    print(f"\nother performances of the query's work among its top {K} (synthetic, so a check, not a result): "
          f"versions {recall_versions:.3f}, combined {recall_similar:.3f}")
    floor = wall["--help (start-up floor)"]
    print(f"--versions end to end is {v / s:.2f}x --track and {v / wall['--duplicates']:.2f}x --duplicates, "
          f"{v - floor:.2f} s past the start-up floor ({floor:.2f} s); in process {p50:.2f} ms a query. "
          f"Load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
