"""The benchmark grid: every combination through the CLI, resumable, into leaderboard.md."""

import json

from benchmarks.grid import main as grid


def test_grid_fills_the_leaderboard_and_survives_a_failing_combination(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results, board = tmp_path / "results.jsonl", tmp_path / "leaderboard.md"
    args = ["--config", str(tiny_config), "--models", "fcn,no_such_model", "--transforms", "mel,mfcc",
            "--results", str(results), "--leaderboard", str(board), "--out", str(tmp_path / "grid")]
    grid(args)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["model"], r["transform"]) for r in rows] == [("fcn", "mel"), ("fcn", "mfcc")]
    assert all(r["dataset"] == "gtzan" and r["split"] == "fault_filtered" and r["synthetic"] for r in rows)
    text = board.read_text()
    assert "SYNTHETIC gtzan, split `fault_filtered`" in text and "say nothing about real music" in text
    assert text.count("| fcn |") == 2

    grid(args)  # a rerun skips what is done and keeps what was written
    assert len(results.read_text().splitlines()) == 2
