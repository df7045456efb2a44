"""The hand-crafted reference every learned genre model must beat: MFCC statistics + logistic regression.

Each clip becomes the mean and standard deviation over time of its 20 MFCCs at 22,050 Hz (the
"bag of frames" of Tzanetakis & Cook 2002, :func:`zoo.recommend.evaluate.mfcc_stats`); a
logistic regression is fitted on the training part's vectors (z-scored with the training
part's statistics), its inverse regularisation ``C`` chosen on the validation part, and it
is scored once on the test part. It is deterministic: the same split gives the same figure,
so it has no seed spread (n = 1).

    python -m benchmarks.mfcc_baseline --root ROOT [--split artist] [--results FILE.jsonl]

appends one ``"kind": "baseline"`` record to the results file, which ``musiczoo leaderboard``
shows under the learned models of the same dataset and split.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.baselines import FITTED
from benchmarks.records import append_record
from datamodules.items import Item

log = logging.getLogger(__name__)

#: librosa's defaults: 20 coefficients at 22,050 Hz.
MFCC_RATE, MFCC_COEFFICIENTS = 22050, 20
#: The inverse regularisation strengths tried, the validation part choosing (ties: the stronger).
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
NAME = "mfcc_stats_logreg"


def file_features(paths: list[str | Path], vector_of, width: int, progress: bool = False,
                  desc: str = "features") -> tuple[np.ndarray, dict[int, str]]:
    """(``vector_of(audio)`` of every decodable file, each decoded mono at :data:`MFCC_RATE`, (N,
    ``width``); position -> error of those that could not be decoded or hold no samples, each
    naming its file, so that one bad file never stops a run). The hand-crafted baselines' one loop."""
    from tqdm.auto import tqdm

    from datamodules.primitives.audio import AudioDecodeError, decode_audio

    rows, bad = [], {}
    for n, path in enumerate(tqdm(paths, desc=desc, unit="file", disable=not progress)):
        try:
            audio = decode_audio(str(path), MFCC_RATE)
            if not len(audio):
                raise AudioDecodeError("no samples")
        except AudioDecodeError as e:
            bad[n] = f"{path}: {e}" if str(path) not in str(e) else str(e)
            continue
        rows.append(vector_of(audio))
    return np.stack(rows) if rows else np.zeros((0, width)), bad


def mfcc_features(paths: list[str | Path], progress: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`file_features` of the MFCC mean+std vector, (N, 40)."""
    import torch

    from zoo.frontends import create_frontend
    from zoo.recommend import evaluate

    frontend = create_frontend("mfcc", sample_rate=MFCC_RATE, n_mfcc=MFCC_COEFFICIENTS)

    def vector(audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return evaluate.mfcc_stats(frontend(torch.from_numpy(audio)[None])[0, 0].numpy())

    return file_features(paths, vector, 2 * MFCC_COEFFICIENTS, progress, "MFCC")


def fit_and_score(parts: dict[str, list[Item]], num_classes: int, progress: bool = False) -> dict:
    """Fit on ``parts["train"]``, choose ``C`` on ``parts["val"]``, score ``parts["test"]``: the metrics
    (test and validation accuracy, test macro F1), the ``C`` chosen, the clips used and skipped per part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    data, skipped = {}, {}
    for name in ("train", "val", "test"):
        features, bad = mfcc_features([item.source for item in parts[name]], progress)
        for error in bad.values():
            log.warning("skipping %s", error)
        targets = np.array([item.target for n, item in enumerate(parts[name]) if n not in bad], dtype=int)
        if not len(targets):
            raise ValueError(f"the {name} part has no decodable clip")
        data[name], skipped[name] = (features, targets), len(bad)
    mean, std = data["train"][0].mean(axis=0), data["train"][0].std(axis=0)
    std[std == 0] = 1.0
    scaled = {name: ((x - mean) / std, y) for name, (x, y) in data.items()}

    def fitted(c: float):
        return LogisticRegression(C=c, max_iter=5000).fit(*scaled["train"])

    val_acc = {c: float((fitted(c).predict(scaled["val"][0]) == scaled["val"][1]).mean()) for c in C_GRID}
    best = max(C_GRID, key=lambda c: (val_acc[c], -c))
    predicted = fitted(best).predict(scaled["test"][0])
    truth = scaled["test"][1]
    return {"metrics": {"test/acc": float((predicted == truth).mean()),
                        "test/f1_macro": float(f1_score(truth, predicted, average="macro",
                                                        labels=list(range(num_classes)), zero_division=0)),
                        "val/acc": val_acc[best]},
            "C": best, "clips": {name: len(y) for name, (_, y) in data.items()}, "skipped": skipped}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="a GTZAN root (the genre folders, or the folder above them)")
    parser.add_argument("--split", default="artist", help="the GTZAN split (default: artist)")
    parser.add_argument("--results", type=Path, help="append the record to this JSON-lines results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from datamodules.gtzan import GTZANDataModule
    from datamodules.synthetic_marker import is_synthetic
    from zoo.hub import git_commit, package_versions

    module = GTZANDataModule(args.root, split=args.split)
    start = time.perf_counter()
    result = fit_and_score(module.split_items(), len(module.label_names), progress=True)
    record = {"kind": "baseline", "status": "ok", "baseline": NAME, "dataset": "gtzan", "split": module.split_name,
              "synthetic": is_synthetic(module.data_dir), "root": args.root, "protocol": FITTED, **result,
              "features": f"MFCC mean+std over time, {MFCC_COEFFICIENTS} coefficients at {MFCC_RATE} Hz",
              "seconds": {"wall": round(time.perf_counter() - start, 1)}, "versions": package_versions(),
              "commit": git_commit(), "command": shlex.join(["python", "-m", "benchmarks.mfcc_baseline", *sys.argv[1:]])}
    if args.results:
        append_record(args.results, record)
    print(f"{NAME} on gtzan {module.split_name}: test accuracy {result['metrics']['test/acc']:.3f}, "
          f"macro F1 {result['metrics']['test/f1_macro']:.3f} (C={result['C']}, clips {result['clips']})")
    return record


if __name__ == "__main__":
    main()
