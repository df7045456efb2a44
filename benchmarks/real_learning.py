"""The real-learning guard's training, and the seed spread its margin comes from.

``tests/test_real_gtzan.py`` trains the paper's genre model (ResNet+GRU on Mel, the registered
size, the task's default optimiser) for :data:`EPOCHS` epochs on the training part of the GTZAN
artist split of a folder (the 409 real excerpts in CI) and requires its test accuracy to beat
chance and the MFCC-statistics baseline of the same split minus a margin. This prints that
training's test accuracy for several seeds, their mean and standard deviation, and the
baseline's figure, so the margin (two standard deviations) can be checked or remade::

    python -m benchmarks.real_learning --root runs/bench/data/gtzan_excerpts --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

#: Training epochs of the guard: about a minute on one core for the 244 training excerpts.
EPOCHS = 10
SAMPLE_RATE, CHUNK_SECONDS = 16000, 2.0


def train_and_test(root: str, seed: int, cache_dir: str, epochs: int = EPOCHS) -> dict:
    """Train ResNet+GRU on Mel on the artist split's training part of ``root``; its test metrics."""
    import lightning as L

    from datamodules.gtzan import GTZANDataModule
    from zoo.task import MusicTask

    L.seed_everything(seed)
    data = GTZANDataModule(root, split="artist", sample_rate=SAMPLE_RATE, chunk_seconds=CHUNK_SECONDS, batch_size=16,
                           cache_dir=cache_dir)
    task = MusicTask(architecture="resnet_gru", transform="mel", num_classes=len(data.label_names),
                     sample_rate=SAMPLE_RATE, chunk_seconds=CHUNK_SECONDS, label_names=list(data.label_names))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=cache_dir)
    trainer.fit(task, datamodule=data)
    (metrics,) = trainer.test(task, datamodule=data, verbose=False)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="a GTZAN root with splits/GTZANindex.txt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    from benchmarks.mfcc_baseline import fit_and_score
    from datamodules.gtzan import GTZANDataModule

    baseline = fit_and_score(GTZANDataModule(args.root, split="artist").split_items(), 10)["metrics"]["test/acc"]
    accuracies = []
    with tempfile.TemporaryDirectory() as cache:
        for seed in args.seeds:
            start = time.perf_counter()
            accuracies.append(train_and_test(args.root, seed, cache)["test/acc"])
            print(f"seed {seed}: test accuracy {accuracies[-1]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else float("nan")
    print(f"ResNet+GRU/Mel, {EPOCHS} epochs: {statistics.fmean(accuracies):.3f} ± {std:.3f} over seeds "
          f"{args.seeds}; MFCC-statistics baseline {baseline:.3f}; two standard deviations {2 * std:.3f}")


if __name__ == "__main__":
    main()
