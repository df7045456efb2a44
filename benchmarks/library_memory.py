"""Peak memory of ``musiczoo index`` against the size of the library it updates.

Adding one file to a library rewrites the library: every track's vectors are merged into a
new data folder and every search index is built again (the library's means change with
each track, so every vector does). This measures that run's peak RSS for libraries of
growing size, in a fresh interpreter per size, beside what the library holds:

* ``raw vectors``: the size of ``vectors.safetensors``, every track's arrays (the named
  baseline: what a run holding the library in memory needs at least once);
* ``largest index``: the largest saved faiss index (the fingerprints'; exact and IVF-Flat
  hold every vector of their feature, IVF-PQ past a million tracks its codes), and the peak
  RSS of building it alone from its unit rows, with the same imports and model loaded
  (indexes are built one at a time);
* ``rest``: peak RSS less that, what the run needs besides building its largest index;
* ``open + query``: the peak RSS of ``Library.open`` of the updated library and one
  ``similar`` query, in a fresh interpreter with the same imports (what the listening room
  and ``musiczoo recommend`` need to answer).

The library is synthetic: one genre model of the study's architecture (ResNet+GRU, 256-d
embedding, 10 genres, untrained) and, per track, random clustered vectors in its widths and
the 1152-d fingerprint's, and a track record like ``index`` writes (its top 5 genres), written
with ``Library.from_vectors``; the file added is a 30 s synthetic WAV. Usage::

    python benchmarks/library_memory.py [--tracks 25000 100000 200000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


def _model():
    import torch

    from zoo.factory import create_model

    torch.manual_seed(0)
    return create_model("resnet_gru", transform="mel", num_classes=10, sample_rate=SAMPLE_RATE,
                        chunk_seconds=3.0).eval()


def setup(work: Path, tracks: int) -> None:
    """The library of ``tracks`` synthetic tracks, the model it was made with, and the file to add."""
    import numpy as np
    import soundfile as sf

    from zoo.hub import save_pretrained
    from zoo.recommend.library import Library, Track

    model = _model()
    save_pretrained(model, work / "model")
    music = work / "music"
    music.mkdir()
    rng = np.random.default_rng(0)
    sf.write(music / "new.wav", (0.1 * rng.standard_normal(30 * SAMPLE_RATE)).astype("float32"), SAMPLE_RATE)

    def clustered(width: int) -> np.ndarray:
        centres = rng.standard_normal((200, width)).astype(np.float32)
        return centres[rng.integers(0, 200, tracks)] + 0.5 * rng.standard_normal((tracks, width), dtype=np.float32)

    arrays = {"model0.embedding": clustered(model.embed_dim), "fingerprint": clustered(1152)}
    arrays["model0.probabilities"] = probabilities = rng.dirichlet(np.ones(10), tracks).astype(np.float32)
    top = np.argsort(-probabilities, axis=1)[:, :5]  # the top labels a track keeps, as `index` writes them
    names = model.spec.label_names
    synthetic = [Track(f"synthetic/{i // 1000:04d}/{i:08d}.mp3", 7_000_000 + i, 1_700_000_000_000_000_000 + i,
                       f"{i:064x}", 240.0, [{names[j]: round(float(probabilities[i, j]), 4) for j in top[i]}])
                 for i in range(tracks)]
    Library.from_vectors(work / "library", [model], music, synthetic, arrays, max_chunks=4)


def add_one(work: Path) -> dict:
    """``Library.add`` of the one new file (what ``musiczoo index`` does when a file arrives)."""
    from zoo.factory import from_pretrained
    from zoo.recommend.library import Library

    model = from_pretrained(work / "model")
    start = time.perf_counter()
    Library.build([model], work / "music", work / "library", files=[work / "music" / "new.wav"], max_chunks=4,
                  progress=False)
    return {"seconds": time.perf_counter() - start,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fingerprint_rows(work: Path) -> None:
    """The library's unit fingerprints as a ``.npy`` file, what its largest index is built from."""
    from safetensors import safe_open

    from zoo.recommend.rows import normalize, write_npy

    data = work / "library" / json.loads((work / "library" / "library.json").read_text())["data"]
    with safe_open(str(data / "vectors.safetensors"), "np") as f:
        rows = f.get_slice("fingerprint")
        size, dim = rows.get_shape()
        write_npy(work / "fingerprint.npy", (size, dim),
                  (normalize(rows[start:min(start + 8192, size)]) for start in range(0, size, 8192)))


def index_alone(work: Path) -> dict:
    """Peak RSS of building the largest index alone (the fingerprints', from its unit rows) with
    the same imports and model loaded: the index's own share of the peak, faiss's buffers included."""
    from zoo.factory import from_pretrained
    from zoo.recommend.index import VectorIndex

    from_pretrained(work / "model")
    VectorIndex.build(work / "fingerprint.npy")
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def open_and_query(work: Path) -> dict:
    """Peak RSS of opening the library and answering one query, with the same imports."""
    from zoo.factory import from_pretrained
    from zoo.recommend.library import Library

    from_pretrained(work / "model")
    start = time.perf_counter()
    library = Library.open(work / "library")
    library.similar("new.wav", k=10)
    return {"seconds": time.perf_counter() - start,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(step: str, work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--step", step, "--dir", str(work)], check=True,
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, nargs="+", default=[25_000, 100_000, 200_000])
    parser.add_argument("--dir", default=None, help="where the libraries are written (default: a temporary folder)")
    parser.add_argument("--step", choices=("setup", "add", "index", "open"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step == "setup":
        setup(Path(args.dir), args.size)
        print(json.dumps({}))
        return
    if args.step in ("add", "index", "open"):
        print(json.dumps({"add": add_one, "index": index_alone, "open": open_and_query}[args.step](Path(args.dir))))
        return

    print("| library tracks | raw vectors MiB | largest index file MiB | peak RSS MiB | peak / raw vectors "
          "| largest index built alone: peak MiB | rest (peak - that) MiB | seconds | open + query: peak MiB | s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tracks in args.tracks:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            work = Path(tmp)
            subprocess.run([sys.executable, __file__, "--step", "setup", "--dir", tmp, "--size", str(tracks)],
                           check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            run = in_child("add", work)
            fingerprint_rows(work)
            alone = in_child("index", work)["peak_mib"]
            opened = in_child("open", work)
            data = work / "library" / json.loads((work / "library" / "library.json").read_text())["data"]
            raw = (data / "vectors.safetensors").stat().st_size / 2**20
            largest = max(p.stat().st_size for p in (data / "index").glob("*.faiss")) / 2**20
            print(f"| {tracks + 1:,} | {raw:.0f} | {largest:.0f} | {run['peak_mib']:.0f} | {run['peak_mib'] / raw:.2f}x "
                  f"| {alone:.0f} | {run['peak_mib'] - alone:.0f} | {run['seconds']:.1f} "
                  f"| {opened['peak_mib']:.0f} | {opened['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
