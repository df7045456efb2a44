"""Recommender search at library scale: build time, memory, per-query latency and recall.

What an interactive recommender waits for: one query at a time ("tracks like this one")
against libraries of ``--sizes`` tracks, with vectors of the real dimension (256: the
resnet_gru embedding; 508 for the combined genre + tag vector). For each size, both index
kinds of ``zoo.recommend.index`` are built and measured, and ``kind="auto"``'s choice is
marked with ``*``:

* build time (normalising, k-means training for "ivf", adding the vectors);
* index size (bytes of the saved faiss index) and the process's peak RSS so far (it
  only grows, and includes the library and query arrays);
* p50 and p99 latency of single-query top-10 searches over ``--queries`` queries;
* recall@10 against exact search (the same queries searched exhaustively in one batch);
* the p50 speed-up over plain NumPy brute force (``library @ query`` + argpartition),
  timed on the same queries.

The vectors are random but clustered: a seeded mixture of ``--clusters`` Gaussian
clusters (centres N(0, 1), tracks centre + ``--spread`` x N(0, 1)); queries are held-out
tracks of the same mixture. Real embeddings are clustered (genres, artists, production
styles), and structureless noise is the worst case for approximate search, where no
index beats brute force by much; the default spread gives same-cluster tracks a cosine
similarity of about 0.5 and unrelated ones about 0. How far "ivf" recall holds up
depends on this structure: try ``--spread 2`` (same-cluster similarity 0.2, close to
noise) or more ``--clusters``.

    python benchmarks/recommend_scale.py [--sizes 10000,100000,1000000] [--dim 256] [--queries 1000] [--threads N]

Target: p50 under 5 ms per query at 1M tracks on 2 cores, with recall@10 >= 0.95.

Past a million tracks the vectors no longer belong in memory (10M x 256 float32 is 10 GB):
``--file-sizes 1000000,10000000`` measures the index built from a ``.npy`` file instead. For
each size the library is generated to ``--work`` in chunks, the true top-10 of the queries
is found by brute force over the file in batches, and each kind of ``--file-kinds`` is built
from the file and searched in a child process of its own, whose peak RSS (VmHWM) is that
build and search only, not the generator's; the ``"ivfpq"`` child also searches with the
other ``--sweep`` settings (nprobe/rerank) of the same index. Only ``"ivfpq"`` runs above
``IVF_MAX`` (the others would hold the whole library in memory). The files are deleted after.

    python benchmarks/recommend_scale.py --file-sizes 1000000,10000000 --file-kinds exact,ivfpq --queries 500 --threads 2

Target at 10M: p50 under 10 ms, recall@10 >= 0.95, peak RSS under 8 GB.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from zoo.recommend.index import EXACT_MAX, IVF_MAX, VectorIndex, normalize

K = 10
TARGET_P50_MS, TARGET_RECALL = 5.0, 0.95
FILE_TARGET_P50_MS, FILE_TARGET_RSS_GB = 10.0, 8.0
GENERATION_CHUNK = 100_000
"""Tracks generated at a time: noise for a whole 1M x 256 library at once would be another 1 GB."""


def clustered_vectors(count: int, centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` float32 vectors, each a random centre plus ``spread`` x N(0, 1) noise."""
    vectors = np.empty((count, centres.shape[1]), dtype=np.float32)
    for start in range(0, count, GENERATION_CHUNK):
        stop = min(count, start + GENERATION_CHUNK)
        noise = rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
        vectors[start:stop] = centres[rng.integers(len(centres), size=stop - start)] + spread * noise
    return vectors


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def numpy_top_k(library: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The baseline: score every track, then the top ``K`` ids, best first."""
    scores = library @ query
    top = np.argpartition(scores, -K)[-K:]
    return top[np.argsort(-scores[top])]


def index_top_k(index: VectorIndex, query: np.ndarray) -> np.ndarray:
    return index.search(query[None], K)[1][0]


def single_query_timings(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per query, ids (Q, K)) for ``search(one_query_row) -> K ids``, one query at a time.

    A few untimed queries first, so page faults and lazy allocations are not timed."""
    for query in queries[:10]:
        search(query)
    seconds, found = np.empty(len(queries)), np.empty((len(queries), K), dtype=np.int64)
    for row, query in enumerate(queries):
        start = time.perf_counter()
        found[row] = search(query)
        seconds[row] = time.perf_counter() - start
    return seconds, found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-K that was found, averaged over queries."""
    return float(np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth)]))


def saved_bytes(index: VectorIndex) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "library.faiss"
        index.save(path)
        return path.stat().st_size


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ---- libraries in files (--file-sizes) ---------------------------------------------------------
def write_clustered_npy(path: Path, count: int, centres: np.ndarray, spread: float, rng: np.random.Generator) -> None:
    """``clustered_vectors`` written to a float32 ``.npy`` chunk by chunk with plain writes:
    neither the whole array nor a written memory map's pages are ever held."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_2_0(file, {"descr": "<f4", "fortran_order": False,
                                                    "shape": (count, centres.shape[1])})
        for start in range(0, count, GENERATION_CHUNK):
            clustered_vectors(min(GENERATION_CHUNK, count - start), centres, spread, rng).tofile(file)


def file_true_top_k(path: Path, queries: np.ndarray) -> np.ndarray:
    """The exact top-``K`` ids for each of ``queries`` (unit rows): brute force over the library
    file, ``GENERATION_CHUNK`` rows at a time, each batch mapped and unmapped in turn."""
    best_scores = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), K), -1, dtype=np.int64)
    size = len(np.load(path, mmap_mode="r"))
    for start in range(0, size, GENERATION_CHUNK):
        rows = np.load(path, mmap_mode="r")
        scores = queries @ normalize(rows[start:start + GENERATION_CHUNK]).T
        del rows
        top = np.argpartition(scores, -K, axis=1)[:, -K:]
        scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        ids = np.concatenate([best_ids, top + start], axis=1)
        order = np.argsort(-scores, axis=1)[:, :K]
        best_scores, best_ids = np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
    return best_ids


def peak_hwm_bytes() -> int:
    """This process's peak RSS so far (VmHWM): unlike ru_maxrss, it starts afresh at exec."""
    return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))


def measure_child(job: dict) -> None:
    """The child process of one size and kind: build from the file, save, search; one JSON line out."""
    if job["threads"]:
        from threadpoolctl import threadpool_limits

        threadpool_limits(job["threads"])
    folder, queries = Path(job["folder"]), np.load(job["queries"])
    index_path = folder / f"{job['kind']}.faiss"
    start = time.perf_counter()
    index = VectorIndex.build(Path(job["library"]), job["kind"], seed=job["seed"],
                              vectors_path=index_path.with_name(index_path.name + ".vectors.npy"))
    index.save(index_path)
    build_seconds = time.perf_counter() - start
    index_bytes = index_path.stat().st_size
    results = []
    sweep = [dict(index.params)] + [{**index.params, **setting} for setting in job["sweep"]] \
        if job["kind"] == "ivfpq" else [dict(index.params)]
    for params in sweep:
        index.params = params
        if "nprobe" in params:
            index.index.nprobe = params["nprobe"]
        seconds, found = single_query_timings(functools.partial(index_top_k, index), queries)
        results.append({"params": params, "p50": float(np.median(seconds)), "p99": float(np.percentile(seconds, 99)),
                        "found": found.tolist(), "peak_rss": peak_hwm_bytes()})
    print(json.dumps({"build": build_seconds, "index_bytes": index_bytes, "results": results}))
    del index
    for path in folder.glob(f"{job['kind']}.faiss*"):
        path.unlink()


def measure_files(args, sizes: list[int]) -> None:
    """``--file-sizes``: each library generated to a file, each kind measured in its own child."""
    kinds = args.file_kinds.split(",")
    sweep = [dict(zip(("nprobe", "rerank"), map(int, setting.split("/")))) for setting in args.sweep.split(",") if setting]
    print(f"libraries in .npy files under {args.work}; each kind built from the file and searched in a child "
          f"process (peak RSS: its VmHWM); recall@10 against brute force over the file; "
          f"{args.queries} single queries\n")
    header = (f"{'size':>10} {'kind':<6} {'build s':>8} {'index MiB':>10} {'vectors MiB':>12} {'peak RSS MiB':>13} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}  params")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    verdicts = []
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"recommend-scale-{size}-", dir=args.work))
        try:
            library = folder / "library.npy"
            start = time.perf_counter()
            write_clustered_npy(library, size, centres, args.spread, rng)
            queries = normalize(clustered_vectors(args.queries, centres, args.spread, rng))
            np.save(folder / "queries.npy", queries)
            generated = time.perf_counter() - start
            start = time.perf_counter()
            truth = file_true_top_k(library, queries)
            print(f"{size:>10,} generated in {generated:.0f} s ({library.stat().st_size / 2**20:,.0f} MiB), "
                  f"true top-{K} by brute force over the file in {time.perf_counter() - start:.0f} s", flush=True)
            for kind in kinds:
                if kind != "ivfpq" and size > IVF_MAX:
                    print(f"{size:>10,} {kind:<6} not run: it would hold the whole library in memory")
                    continue
                job = {"kind": kind, "folder": str(folder), "library": str(library), "queries": str(folder / "queries.npy"),
                       "seed": args.seed, "threads": args.threads, "sweep": sweep}
                child = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], check=True,
                                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
                measured = json.loads(child.stdout.strip().splitlines()[-1])
                vectors_mib = size * args.dim * 4 / 2**20 if kind == "ivfpq" else 0
                for number, result in enumerate(measured["results"]):
                    found_recall, first = recall(np.array(result["found"]), truth), number == 0
                    built = (f"{measured['build']:>8.1f} {measured['index_bytes'] / 2**20:>10.0f} {vectors_mib:>12.0f}"
                             if first else f"{'':>8} {'':>10} {'':>12}") + f" {result['peak_rss'] / 2**20:>13.0f}"
                    print(f"{size:>10,} {kind:<6} {built} {result['p50'] * 1e3:>8.3f} {result['p99'] * 1e3:>8.3f} "
                          f"{found_recall:>10.3f}  {result['params']}{'' if first else ' (the same index)'}", flush=True)
                    if first and kind == "ivfpq":
                        rss_gb = result["peak_rss"] / 1e9
                        met = (result["p50"] * 1e3 < FILE_TARGET_P50_MS and found_recall >= TARGET_RECALL
                               and rss_gb < FILE_TARGET_RSS_GB)
                        verdicts.append(f"ivfpq at {size:,}: p50 {result['p50'] * 1e3:.2f} ms (< {FILE_TARGET_P50_MS:g}), "
                                        f"recall@10 {found_recall:.3f} (>= {TARGET_RECALL}), peak RSS {rss_gb:.2f} GB "
                                        f"(< {FILE_TARGET_RSS_GB:g}; the raw vectors: {size * args.dim * 4 / 1e9:.2f} GB, "
                                        f"{size * args.dim * 4 / 1e9 / rss_gb:.1f}x the RSS): {'met' if met else 'NOT met'}")
        finally:
            shutil.rmtree(folder)
    print("\n" + "\n".join(verdicts) + f"\nload average at the end: {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="library sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="threads for faiss and NumPy (default: all cores)")
    parser.add_argument("--file-sizes", help="measure libraries built from .npy files of these sizes instead")
    parser.add_argument("--file-kinds", default="exact,ivfpq", help="kinds built from the files (ivfpq only above IVF_MAX)")
    parser.add_argument("--sweep", default="8/300,16/1000", help="other nprobe/rerank settings to search the ivfpq index with")
    parser.add_argument("--work", default=tempfile.gettempdir(), help="folder for the library files (10 GB at 10M x 256)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return measure_child(json.loads(args.child))
    sizes = sorted(int(size) for size in (args.file_sizes or args.sizes).split(","))
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # faiss's OpenMP and NumPy's BLAS alike

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads), numpy {np.__version__}, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f} (other work on the cores slows every row)")
    print(f"data: {args.dim}-d vectors from a mixture of {args.clusters} Gaussian clusters, spread {args.spread:g} "
          f"(clustered like real embeddings; uniform noise would be the worst case for approximate search), "
          f"seed {args.seed}")
    if args.file_sizes:
        return measure_files(args, sizes)
    print(f"queries: {args.queries} held-out tracks, one at a time, top-{K}; auto = exact up to {EXACT_MAX:,} tracks; "
          f"* marks auto's choice\n")
    header = (f"{'size':>9} {'kind':<7} {'build s':>8} {'index MiB':>10} {'peak RSS MiB':>13} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10} {'vs numpy':>9}  params")
    print(header)
    print("-" * len(header))

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    verdict = ""
    for size in sizes:
        library = normalize(clustered_vectors(size, centres, args.spread, rng))
        queries = normalize(clustered_vectors(args.queries, centres, args.spread, rng))

        numpy_seconds, numpy_found = single_query_timings(functools.partial(numpy_top_k, library), queries)
        numpy_p50 = np.median(numpy_seconds)
        auto_kind = "exact" if size <= EXACT_MAX else "ivf"
        truth = None
        for kind in ("exact", "ivf"):
            start = time.perf_counter()
            index = VectorIndex.build(library, kind, seed=args.seed)
            build_seconds = time.perf_counter() - start
            if truth is None:  # exact comes first: one batched search gives the true top-K
                truth = index.search(queries, K)[1]
                print(f"{size:>9,} {'numpy':<7} {'-':>8} {library.nbytes / 2**20:>10.0f} {'':>13} "
                      f"{numpy_p50 * 1e3:>8.3f} {np.percentile(numpy_seconds, 99) * 1e3:>8.3f} "
                      f"{recall(numpy_found, truth):>10.3f} {'1.0x':>9}  library @ query + argpartition; "
                      f"'index' is the library array", flush=True)
            seconds, found = single_query_timings(functools.partial(index_top_k, index), queries)
            p50, found_recall = np.median(seconds), recall(found, truth)
            marker = "*" if kind == auto_kind else " "
            print(f"{size:>9,} {kind + marker:<7} {build_seconds:>8.1f} {saved_bytes(index) / 2**20:>10.0f} "
                  f"{peak_rss_bytes() / 2**20:>13.0f} {p50 * 1e3:>8.3f} {np.percentile(seconds, 99) * 1e3:>8.3f} "
                  f"{found_recall:>10.3f} {numpy_p50 / p50:>8.1f}x  {index.params or ''}", flush=True)
            if kind == auto_kind:
                met = p50 * 1e3 < TARGET_P50_MS and found_recall >= TARGET_RECALL
                verdict = (f"target at {size:,} tracks (auto: {kind}): p50 {p50 * 1e3:.2f} ms (< {TARGET_P50_MS:g}), "
                           f"recall@10 {found_recall:.3f} (>= {TARGET_RECALL}): {'met' if met else 'NOT met'}")
            del index
        del library, queries
    print(f"\n{verdict}\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
