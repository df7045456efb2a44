"""The references every learned version model must beat, scored as it is: retrieval over the test works.

Each baseline turns a performance into a vector (or a similarity) without learning anything
about versions, and every test performance queries all the others (MAP, MR1 and P@10,
:func:`zoo.problems.retrieval_scores`, the figures the model task logs):

- ``fingerprint``: the library's signal fingerprint (:mod:`zoo.recommend.fingerprint`, what
  ``recommend --duplicates`` uses), computed as ``musiczoo index`` does. It finds a copy of a
  recording; another key, tempo or arrangement changes every cell of it.
- ``genre_embedding``: a genre model's pooled embedding (``--genre-model``, anything
  ``musiczoo predict`` takes), centred on the test set's mean: what similarity search uses. It
  follows the kind of music, which a cover changes.
- ``mfcc_stats``: the genre baseline's MFCC mean and standard deviation, z-scored: timbre.
- ``chroma_oti``: the mean and standard deviation over time of each pitch class's share of the
  frame's chroma energy (the ``chroma`` front-end), compared under the best of the 12 circular
  transpositions (the optimal transposition index, Serrà et al. 2008): key-invariant harmony
  statistics, with no notion of order in time.

    python -m benchmarks.covers_baseline --root ROOT [--table cliques.csv] [--genre-model MODEL] [--results FILE.jsonl]

appends one ``"kind": "baseline"`` record per baseline, which ``musiczoo leaderboard`` shows under
the learned models of the same dataset and split. Deterministic: n = 1.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.baselines import RANKED
from benchmarks.mfcc_baseline import MFCC_RATE, file_features, mfcc_features
from benchmarks.records import append_record
from zoo.problems import retrieval_scores

log = logging.getLogger(__name__)

FEATURES = {"fingerprint": "the library's signal fingerprint (recommend --duplicates)",
            "genre_embedding": "a genre model's pooled embedding, centred",
            "mfcc_stats": "MFCC mean+std over time, z-scored",
            "chroma_oti": "pitch-class share mean+std over time, best of 12 transpositions"}


def chroma_features(paths: list, progress: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """(N, 2, 12): per file, the mean and std over frames of each pitch class's share of the frame's energy."""
    from zoo.frontends import create_frontend

    frontend = create_frontend("chroma", sample_rate=MFCC_RATE, top_db=None)

    def vector(audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            power = 10 ** (frontend(torch.from_numpy(audio)[None])[0, 0].double() / 10)  # (12, frames)
        share = (power / power.sum(0, keepdim=True).clamp_min(1e-12)).numpy()
        return np.stack([share.mean(1), share.std(1)])

    rows, bad = file_features(paths, lambda a: vector(a).ravel(), 24, progress, "chroma")
    return rows.reshape(-1, 2, 12), bad


def transposition_similarity(stats: np.ndarray):
    """``similarity(rows)`` for :func:`retrieval_scores`: the best cosine over the 12 circular shifts of
    the pitch classes (mean and std shifted together)."""
    x = torch.from_numpy(stats).double()  # not centred: a collection's mean is no transposition of anything
    shifted = torch.stack([x.roll(s, dims=2).flatten(1) for s in range(12)])  # (12, N, 24)
    shifted = torch.nn.functional.normalize(shifted, dim=2)
    plain = shifted[0]
    return lambda rows: torch.einsum("nd,smd->snm", plain[rows], shifted).amax(0)


def model_vectors(paths: list, genre_model: str | None) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """The fingerprint (and, with ``genre_model``, its embedding) of each file, as ``musiczoo index`` computes them."""
    from zoo.factory import from_pretrained
    from zoo.recommend.embedding import embed_files
    from zoo.recommend.store import FINGERPRINT

    if genre_model:
        models = [from_pretrained(genre_model).eval()]
    else:  # the fingerprint alone: any model decides only where chunks are read, so a tiny untrained one will do
        from zoo.factory import create_model

        models = [create_model("fcn", num_classes=2, channels=[4] * 5).eval()]
    rows, bad = {FINGERPRINT: [], "embedding": []}, {}
    for n, (arrays, _, error) in enumerate(embed_files(models, [Path(p) for p in paths], {"max_chunks": 16})):
        if error:
            bad[n] = error
            continue
        rows[FINGERPRINT].append(arrays[FINGERPRINT][0])
        rows["embedding"].append(arrays["model0.embedding"][0])
    return {k: np.stack(v) for k, v in rows.items() if v}, bad


def score_all(items: list, genre_model: str | None = None, progress: bool = False) -> dict[str, dict]:
    """Each baseline's ``{"metrics": {test/map, test/mr1, test/p10}, "clips": ..., "skipped": n}`` on
    ``items`` (the test part: key, file, work). A file that cannot be decoded is left out and counted."""
    paths, works = [it.source for it in items], np.array([it.target for it in items])
    results = {}

    def scored(name, works_kept, skipped, embeddings=None, similarity=None):
        scores = retrieval_scores(None if embeddings is None else torch.from_numpy(embeddings), torch.from_numpy(works_kept),
                                  similarity=similarity)
        results[name] = {"metrics": {f"test/{k}": float(scores[k]) for k in ("map", "mr1", "p10")},
                         "clips": {"test": int(len(works_kept)), "queries": int(scores["queries"])},
                         "skipped": len(skipped)}

    def kept(bad):
        for error in bad.values():
            log.warning("skipping %s", error)
        return np.array([w for n, w in enumerate(works) if n not in bad])

    vectors, bad = model_vectors(paths, genre_model)
    scored("fingerprint", kept(bad), bad, vectors["fingerprint"])
    if genre_model:
        scored("genre_embedding", kept(bad), bad, vectors["embedding"] - vectors["embedding"].mean(0))
    mfcc, bad = mfcc_features(paths, progress)
    std = mfcc.std(0)
    scored("mfcc_stats", kept(bad), bad, (mfcc - mfcc.mean(0)) / np.where(std > 0, std, 1))
    chroma, bad = chroma_features(paths, progress)
    scored("chroma_oti", kept(bad), bad, similarity=transposition_similarity(chroma))
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the audio folder of a clique table")
    parser.add_argument("--table", default="cliques.csv", help="the clique table (default: cliques.csv)")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (as the data module's)")
    parser.add_argument("--genre-model", help="a genre model for the genre_embedding baseline")
    parser.add_argument("--results", type=Path, help="append the records to this JSON-lines results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from datamodules.covers import CliqueTableDataModule
    from zoo.hub import git_commit, package_versions

    module = CliqueTableDataModule(args.root, table=args.table, seed=args.seed)
    start = time.perf_counter()
    results = score_all(module.split_items()["test"], args.genre_model, progress=True)
    records = []
    for name, result in results.items():
        record = {"kind": "baseline", "status": "ok", "baseline": name, "dataset": module.dataset_name,
                  "split": module.split_name, "synthetic": module.synthetic, "root": args.root, "protocol": RANKED, **result,
                  "features": FEATURES[name], "seconds": {"wall": round(time.perf_counter() - start, 1)},
                  "versions": package_versions(), "commit": git_commit(),
                  "command": shlex.join(["python", "-m", "benchmarks.covers_baseline", *sys.argv[1:]])}
        if args.genre_model and name == "genre_embedding":
            record["genre_model"] = args.genre_model
        records.append(record)
        if args.results:
            append_record(args.results, record)
        m = result["metrics"]
        print(f"{name} on {module.dataset_name} {module.split_name}: MAP {m['test/map']:.3f}, MR1 {m['test/mr1']:.2f}, "
              f"P@10 {m['test/p10']:.3f} ({result['clips']['test']} performances)")
    return records


if __name__ == "__main__":
    main()
