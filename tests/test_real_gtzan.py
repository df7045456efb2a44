"""Real music: the hand-crafted baseline, and a guard that the paper's genre model learns from real
recordings (the 409 GTZAN excerpts of ``../shared/data``, split by artist), not only from synthetic data."""

from __future__ import annotations

import logging


from benchmarks.mfcc_baseline import fit_and_score
from datamodules.gtzan import GTZANDataModule
from datamodules.synthetic import make_synthetic_gtzan


def test_the_mfcc_baseline_skips_a_file_it_cannot_decode_and_counts_it(tmp_path, caplog):
    root = make_synthetic_gtzan(tmp_path / "g", seconds=1.0, sample_rate=8000, clips_per_genre=4)
    parts = GTZANDataModule(str(root), split="kfold", k=4, fold=0).split_items()
    broken = parts["test"][0].source
    with open(broken, "wb") as f:
        f.write(b"RIFF not really a wav file")
    with caplog.at_level(logging.WARNING):
        result = fit_and_score(parts, 10)
    assert result["skipped"] == {"train": 0, "val": 0, "test": 1}
    assert result["clips"] == {"train": len(parts["train"]), "val": len(parts["val"]), "test": len(parts["test"]) - 1}
    assert any(str(broken) in message for message in caplog.messages)
    assert 0.0 <= result["metrics"]["test/acc"] <= 1.0 and result["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


#: Two standard deviations of the test accuracy over seeds 0-4 of the guard's training
#: (``python -m benchmarks.real_learning --root ... --seeds 0 1 2 3 4``: 0.442, 0.494, 0.416,
#: 0.429, 0.429 on the 77 test clips, mean 0.442, std 0.030), so that a run that is merely
#: unlucky passes, while one that learns less than the hand-crafted baseline does not.
MARGIN = 0.06


def test_the_genre_model_learns_real_music_as_well_as_mfcc_statistics(gtzan_excerpts, tmp_path):
    """The paper's genre model (ResNet+GRU on Mel), trained for 10 epochs on the training part of
    the artist split of the real excerpts (about a minute on one core), classifies the test
    part's unseen artists far above chance and no worse than the MFCC-statistics baseline of
    the same split minus :data:`MARGIN`. A front-end, crop, label or loss bug that synthetic
    data does not show would fail here."""
    import math

    from benchmarks.real_learning import train_and_test

    baseline = fit_and_score(GTZANDataModule(str(gtzan_excerpts), split="artist").split_items(), 10)
    result = train_and_test(str(gtzan_excerpts), seed=0, cache_dir=str(tmp_path / "cache"))
    tested = baseline["clips"]["test"]
    assert tested == 77
    chance = 0.1 + 5 * math.sqrt(0.1 * 0.9 / tested)  # five standard deviations above guessing
    assert result["test/acc"] > chance, result
    assert result["test/acc"] >= baseline["metrics"]["test/acc"] - MARGIN, (result, baseline["metrics"])
