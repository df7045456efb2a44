"""The hand-crafted reference every learned emotion model must beat: clip-mean features + ridge regression.

Each clip becomes one vector of what the emotion literature's feature sets start from
(Eerola et al. 2009; the MediaEval baselines): the mean and standard deviation over time of
its 20 MFCCs at 22,050 Hz (timbre, as in :mod:`benchmarks.mfcc_baseline`), of its spectral
centroid (brightness) and of its frame RMS (loudness), and four rhythm figures from its onset
strength (the rectified rise of the log-Mel spectrogram): its mean and standard deviation,
onsets per second, and the tempo where its autocorrelation peaks. A ridge regression per
target (closed form, features z-scored with the training part's statistics) is fitted on the
training part, its strength ``alpha`` chosen per target on the validation part (R^2, ties: the
stronger), and scored once on the test part: R^2, Pearson r and the concordance correlation
coefficient per target and their mean over the targets (:func:`regression_metrics`, the
names the model task logs). Deterministic, so n = 1.

    python -m benchmarks.emotion_baseline --root ROOT [--dataset deam|pmemo] [--results FILE.jsonl]

appends one ``"kind": "baseline"`` record to the results file, as ``benchmarks.mfcc_baseline`` does.
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
from benchmarks.mfcc_baseline import MFCC_COEFFICIENTS, MFCC_RATE, file_features
from benchmarks.records import append_record
from datamodules.items import Item

log = logging.getLogger(__name__)

#: The ridge strengths tried, the validation part choosing per target (ties: the stronger).
ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
#: Tempi the autocorrelation of the onset strength is searched over, beats per minute.
TEMPO_RANGE = (40.0, 240.0)
NAME = "clip_features_ridge"
FEATURES = (f"mean+std over time of {MFCC_COEFFICIENTS} MFCCs, spectral centroid and RMS, onset strength "
            f"mean+std, onset rate and autocorrelation tempo, at {MFCC_RATE} Hz")


def clip_features(audio: np.ndarray, frontend) -> np.ndarray:
    """The baseline's vector of one clip (mono float32 at the front-end's rate): (2 x n_mfcc + 8,)."""
    import torch

    from zoo.recommend.evaluate import mfcc_stats

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        power = frontend.power_spectrogram(x)
        mfcc = frontend.features(power)[0].numpy()
        log_mel = frontend.power_to_db(torch.matmul(frontend.mel_fb, power))[0].numpy().astype(np.float64)
        half = frontend.n_fft // 2  # frames centred as the STFT's are
        frames = torch.nn.functional.pad(x, (half, half)).unfold(-1, frontend.n_fft, frontend.hop_length)
        rms = frames.square().mean(-1).sqrt()[0].numpy().astype(np.float64)
    magnitude = np.sqrt(power[0].numpy().astype(np.float64))
    freqs = np.linspace(0, frontend.sample_rate / 2, magnitude.shape[0])
    centroid = (freqs[:, None] * magnitude).sum(0) / np.maximum(magnitude.sum(0), 1e-10)
    frame_rate = frontend.sample_rate / frontend.hop_length
    onset = np.maximum(np.diff(log_mel, axis=1), 0).mean(0) if log_mel.shape[1] > 1 else np.zeros(1)
    return np.concatenate([mfcc_stats(mfcc), [centroid.mean(), centroid.std(), rms.mean(), rms.std(),
                                              onset.mean(), onset.std(), onset_rate(onset, frame_rate),
                                              tempo(onset, frame_rate)]])


def onset_rate(onset: np.ndarray, frame_rate: float) -> float:
    """Onsets per second: local maxima of the onset strength above its mean plus half its std."""
    if len(onset) < 3:
        return 0.0
    middle = onset[1:-1]
    peaks = (middle > onset[:-2]) & (middle >= onset[2:]) & (middle > onset.mean() + 0.5 * onset.std())
    return float(peaks.sum() * frame_rate / len(onset))


def tempo(onset: np.ndarray, frame_rate: float) -> float:
    """Beats per minute at the highest autocorrelation of the onset strength within
    :data:`TEMPO_RANGE` (0 when the clip is too short or has no periodicity)."""
    centred = onset - onset.mean()
    low, high = int(np.ceil(60 * frame_rate / TEMPO_RANGE[1])), int(60 * frame_rate / TEMPO_RANGE[0])
    high = min(high, len(centred) - 1)
    if high < low or not centred.any():
        return 0.0
    lags = np.arange(low, high + 1)
    correlation = np.array([np.dot(centred[:-lag], centred[lag:]) / (len(centred) - lag) for lag in lags])
    return float(60 * frame_rate / lags[correlation.argmax()]) if correlation.max() > 0 else 0.0


def emotion_features(paths: list[str | Path], progress: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`~benchmarks.mfcc_baseline.file_features` of :func:`clip_features`, (N, 2 x n_mfcc + 8)."""
    from zoo.frontends import create_frontend

    frontend = create_frontend("mfcc", sample_rate=MFCC_RATE, n_mfcc=MFCC_COEFFICIENTS)
    return file_features(paths, lambda audio: clip_features(audio, frontend), 2 * MFCC_COEFFICIENTS + 8, progress)


# ---- the regression and its metrics ---------------------------------------------------------
def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights (D, K), intercept (K,)) minimising ||y - x w - b||^2 + alpha ||w||^2, in closed form;
    ``x`` is z-scored (mean 0), so the intercept is the mean of ``y``."""
    intercept = y.mean(axis=0)
    weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (y - intercept))
    return weights, intercept


def regression_metrics(truth: np.ndarray, predicted: np.ndarray, names: list[str], prefix: str = "test/") -> dict[str, float]:
    """The model task's figures (:func:`zoo.problems.regression_scores`: R², Pearson's r and Lin's
    CCC with population moments), named as it logs them: ``{prefix}r2_<name>``,
    ``{prefix}pearson_<name>``, ``{prefix}ccc_<name>`` per target column and ``{prefix}r2``,
    ``{prefix}pearson``, ``{prefix}ccc``, their means over the targets. A figure that is undefined
    (a constant column of targets or predictions) is a ``ValueError`` naming it."""
    import torch

    from zoo.problems import regression_scores

    truth = torch.as_tensor(np.asarray(truth, np.float64)).reshape(len(truth), -1)
    scores = regression_scores(torch.as_tensor(np.asarray(predicted, np.float64)).reshape(truth.shape), truth)
    out: dict[str, float] = {}
    for metric, per_target in scores.items():
        values = per_target.tolist()
        for name, value in zip(names, values):
            if not np.isfinite(value):
                raise ValueError(f"{prefix}{metric}_{name} is undefined: the {name} targets or predictions are constant")
            out[f"{prefix}{metric}_{name}"] = float(value)
        out[f"{prefix}{metric}"] = float(np.mean(values))
    return out


def fit_and_score(parts: dict[str, list[Item]], names: list[str], progress: bool = False) -> dict:
    """Fit on ``parts["train"]``, choose each target's ``alpha`` on ``parts["val"]``, score
    ``parts["test"]``: the metrics (test ones and the validation R^2), the ``alpha`` chosen per
    target, the clips used and skipped per part."""
    data, skipped = {}, {}
    for name in ("train", "val", "test"):
        features, bad = emotion_features([item.source for item in parts[name]], progress)
        for error in bad.values():
            log.warning("skipping %s", error)
        targets = np.array([item.target for n, item in enumerate(parts[name]) if n not in bad], dtype=np.float64)
        if len(targets) < 2:
            raise ValueError(f"the {name} part has {len(targets)} decodable clip(s); R^2 needs at least 2")
        data[name], skipped[name] = (features, targets.reshape(len(targets), -1)), len(bad)
    mean, std = data["train"][0].mean(axis=0), data["train"][0].std(axis=0)
    std[std == 0] = 1.0
    scaled = {name: ((x - mean) / std, y) for name, (x, y) in data.items()}

    def predictions(alpha: float, part: str) -> np.ndarray:
        weights, intercept = ridge_fit(*scaled["train"], alpha)
        return scaled[part][0] @ weights + intercept

    val_r2 = {alpha: regression_metrics(scaled["val"][1], predictions(alpha, "val"), names, "val/") for alpha in ALPHA_GRID}
    best = {name: max(ALPHA_GRID, key=lambda a: (val_r2[a][f"val/r2_{name}"], a)) for name in names}
    predicted = np.stack([predictions(best[name], "test")[:, k] for k, name in enumerate(names)], axis=1)
    metrics = regression_metrics(scaled["test"][1], predicted, names)
    metrics["val/r2"] = float(np.mean([val_r2[best[name]][f"val/r2_{name}"] for name in names]))
    return {"metrics": metrics, "alpha": best, "clips": {name: len(y) for name, (_, y) in data.items()},
            "skipped": skipped}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the dataset folder (DEAM's or PMEmo's layout)")
    parser.add_argument("--dataset", choices=["deam", "pmemo"], default="deam")
    parser.add_argument("--results", type=Path, help="append the record to this JSON-lines results file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from datamodules.emotion import DEAMDataModule, PMEmoDataModule
    from zoo.hub import git_commit, package_versions

    module = {"deam": DEAMDataModule, "pmemo": PMEmoDataModule}[args.dataset](args.root)
    start = time.perf_counter()
    result = fit_and_score(module.split_items(), module.label_names, progress=True)
    record = {"kind": "baseline", "status": "ok", "baseline": NAME, "dataset": module.dataset_name,
              "split": module.split_name, "synthetic": module.synthetic, "root": args.root, "protocol": FITTED, **result,
              "target_scale": list(module.target_scale), "features": FEATURES, "seconds": {"wall": round(time.perf_counter() - start, 1)},
              "versions": package_versions(), "commit": git_commit(),
              "command": shlex.join(["python", "-m", "benchmarks.emotion_baseline", *sys.argv[1:]])}
    if args.results:
        append_record(args.results, record)
    m = result["metrics"]
    print(f"{NAME} on {module.dataset_name} {module.split_name}: test "
          + "; ".join(f"{name} R^2 {m[f'test/r2_{name}']:.3f}, r {m[f'test/pearson_{name}']:.3f}, "
                      f"CCC {m[f'test/ccc_{name}']:.3f}" for name in module.label_names)
          + f"; mean R^2 {m['test/r2']:.3f} (alpha {result['alpha']}, clips {result['clips']})")
    return record


if __name__ == "__main__":
    main()
