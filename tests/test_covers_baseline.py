"""The version baselines: the transposition-invariant chroma similarity, and records the leaderboard reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.baselines import check_baseline
from benchmarks.covers_baseline import main, transposition_similarity
from datamodules.synthetic_covers import make_synthetic_covers
from zoo.factory import create_model
from zoo.hub import save_pretrained


def test_the_best_transposition_makes_a_transposed_performance_identical():
    rng = np.random.default_rng(0)
    stats = rng.random((5, 2, 12))
    stats[1] = np.roll(stats[0], 5, axis=1)  # performance 1 is performance 0 five semitones up
    similarity = transposition_similarity(stats)(torch.tensor([0]))[0]
    assert similarity[1].item() == pytest.approx(similarity[0].item()) == pytest.approx(1.0)
    assert (similarity[2:] < 0.99).all()


def test_the_baselines_write_records_the_leaderboard_reads(tmp_path, capsys):
    root = make_synthetic_covers(tmp_path / "covers", n_works=8, versions=2, seconds=3.0, sample_rate=16000)
    genre = create_model("fcn", num_classes=3, sample_rate=16000, label_names=["a", "b", "c"], channels=[4] * 5).eval()
    save_pretrained(genre, tmp_path / "genre", chunk_seconds=1.0)
    results = tmp_path / "results.jsonl"
    main(["--root", str(root), "--genre-model", str(tmp_path / "genre"), "--results", str(results),
          "--seed", "1"])
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["baseline"] for r in records] == ["fingerprint", "genre_embedding", "mfcc_stats", "chroma_oti"]
    for n, record in enumerate(records, 1):
        check_baseline(f"results.jsonl:{n}", record)
        assert record["synthetic"] and record["split"] == "by-work(val=0.15,test=0.15,seed=1)"
        assert set(record["metrics"]) == {"test/map", "test/mr1", "test/p10"} and 0 < record["metrics"]["test/map"] <= 1
    assert "chroma_oti on covers by-work" in capsys.readouterr().out
