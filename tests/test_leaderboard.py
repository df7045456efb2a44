"""``musiczoo leaderboard``: matrices of mean +- std over seeds, the paired transform comparison, heatmaps."""

import json
import shlex

import pytest

from benchmarks.leaderboard import main as leaderboard, paired_difference
from benchmarks.reference_results import reference_section


def record(architecture, transform, seed, acc, dataset="gtzan", synthetic=True, **extra):
    return {"kind": "bench", "status": "ok", "cell": f"{dataset}/{architecture}-{transform}-seed{seed}",
            "grid": "benchmarks/grids/g.yaml", "results": "r.jsonl", "dataset_entry": dataset, "dataset": dataset,
            "split": "fault_filtered", "synthetic": synthetic, "architecture": architecture, "transform": transform,
            "seed": seed, "metrics": {"test/acc": acc, "test/loss": 1.0}, "params": 1_390_000 if architecture == "resnet_gru" else 440_000,
            "epochs": 3, "train_samples_per_s": 100.0 if architecture == "resnet_gru" else 300.0,
            "seconds": {"wall": 60.0}, "hardware": "CPU: test (2 cores)", "commit": "abc123def4567890", **extra}


HAND_WRITTEN = [
    # resnet_gru: stft is clearly worse than mel on every seed; mfcc differs within noise
    record("resnet_gru", "mel", 0, 0.70), record("resnet_gru", "mel", 1, 0.72), record("resnet_gru", "mel", 2, 0.74),
    record("resnet_gru", "mfcc", 0, 0.73), record("resnet_gru", "mfcc", 1, 0.69), record("resnet_gru", "mfcc", 2, 0.75),
    record("resnet_gru", "stft", 0, 0.60), record("resnet_gru", "stft", 1, 0.61), record("resnet_gru", "stft", 2, 0.65),
    record("fcn", "mel", 0, 0.50), record("fcn", "mfcc", 0, 0.40),
]


def test_matrix_comparison_heatmap_and_reproduce_from_a_hand_written_results_file(tmp_path):
    results = tmp_path / "r.jsonl"
    failed = {"kind": "bench", "status": "failed", "cell": "gtzan/fcn-stft-seed0", "grid": "benchmarks/grids/g.yaml",
              "dataset_entry": "gtzan", "architecture": "fcn", "transform": "stft", "seed": 0, "config_hash": "x",
              "error": "RuntimeError: out of memory"}
    # an older attempt of a cell that later succeeded is not shown; the latest ok record counts
    stale = record("fcn", "mel", 0, 0.10)
    results.write_text("\n".join(json.dumps(r) for r in [stale, *HAND_WRITTEN, failed]) + "\n")
    out, figures = tmp_path / "board" / "leaderboard.md", tmp_path / "board" / "figures"
    leaderboard([str(results), "--out", str(out), "--figures", str(figures)])
    text = out.read_text()

    assert "## SYNTHETIC GTZAN, `fault_filtered` split" in text
    assert "### accuracy: SYNTHETIC GTZAN, `fault_filtered` split" in text
    assert ("| architecture | params (M) | train samples/s | mel | mfcc | stft |\n|---|---:|---:|---:|---:|---:|\n"
            "| fcn | 0.44 | 300 | 0.500 (n=1) | 0.400 (n=1) | - |\n"
            "| resnet_gru | 1.39 | 100 | 0.720 ± 0.020 (n=3) | **0.723 ± 0.031 (n=3)** best | 0.620 ± 0.026 (n=3) |\n") in text
    # stft - mel per seed: -0.10, -0.11, -0.09 -> mean -0.100, sd 0.010: far beyond 2 SE.
    # mfcc - mel: +0.03, -0.03, +0.01 -> mean +0.003, sd 0.031: within noise. fcn has one seed: no test.
    assert ("| architecture | mfcc - mel | stft - mel |\n|---|---:|---:|\n"
            "| fcn | -0.100 (n=1) | - |\n"
            "| resnet_gru | +0.003 ± 0.031 (n=3) | -0.100 ± 0.010 (n=3) **> 2 SE** |\n") in text
    assert "- `gtzan/fcn-stft-seed0`: RuntimeError: out of memory" in text
    assert "**Synthetic data**" in text and "11 cells: seeds 0, 1, 2; 3 epochs" in text
    picture = figures / "synthetic_gtzan_fault_filtered.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](figures/synthetic_gtzan_fault_filtered.png)" in text
    assert "- `musiczoo bench benchmarks/grids/g.yaml` (12 cells, results `r.jsonl`, commit abc123def456)" in text
    assert f"then `musiczoo leaderboard {shlex.quote(str(results))} --out {out} --figures {figures}`" in text
    assert "## Published reference results" in text
    # ours come before the literature's, which is its own section
    assert text.index("## Published reference results") > text.index("## Reproduce")


def test_real_and_synthetic_data_are_never_one_table(tmp_path):
    results = tmp_path / "r.jsonl"
    rows = [record("fcn", "mel", 0, 0.5), record("fcn", "mel", 0, 0.8, synthetic=False)]
    rows[1]["cell"] = "real/fcn-mel-seed0"
    results.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    leaderboard([str(results), "--out", str(tmp_path / "l.md"), "--figures", str(tmp_path / "f")])
    text = (tmp_path / "l.md").read_text()
    assert "## SYNTHETIC GTZAN, `fault_filtered` split" in text and "## GTZAN, `fault_filtered` split" in text
    assert len(list((tmp_path / "f").glob("*.png"))) == 2


def test_tagging_gets_roc_auc_and_pr_auc_matrices(tmp_path):
    rows = []
    for seed, (roc, pr) in enumerate([(0.80, 0.30), (0.82, 0.34)]):
        row = record("resnet_vit", "mel", seed, None, dataset="mtat")
        row["metrics"] = {"test/roc_auc": roc, "test/pr_auc": pr}
        rows.append(row)
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    leaderboard([str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "l.md"), "--figures", str(tmp_path / "f")])
    text = (tmp_path / "l.md").read_text()
    assert "### ROC-AUC: SYNTHETIC MagnaTagATune" in text and "**0.810 ± 0.014 (n=2)** best" in text
    assert "### PR-AUC: SYNTHETIC MagnaTagATune" in text and "**0.320 ± 0.028 (n=2)** best" in text
    assert "### accuracy" not in text


def test_paired_difference_needs_two_seeds_and_pairs_by_seed():
    assert paired_difference({0: 0.5}, {0: 0.4}) == (pytest.approx([0.1]), False)
    differences, beyond = paired_difference({0: 0.6, 1: 0.7, 2: 0.65}, {0: 0.5, 1: 0.6, 3: 0.1})
    assert differences == pytest.approx([0.1, 0.1]) and beyond  # seed 2 and 3 have no partner
    assert paired_difference({0: 0.6, 1: 0.4}, {0: 0.5, 1: 0.5}) == (pytest.approx([0.1, -0.1]), False)


def test_reference_results_carry_a_citation_and_where_they_were_checked():
    text = "\n".join(reference_section())
    assert "Won" in text and "0.9129" in text and "0.4614" in text
    assert text.count("Checked against:") >= 2


def test_missing_results_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file .*nope.jsonl"):
        leaderboard([str(tmp_path / "nope.jsonl")])


def run_leaderboard(capsys, *argv) -> tuple[int, list[str]]:
    """The real ``musiczoo leaderboard`` in process: (exit status, the lines of stderr)."""
    from zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["leaderboard", *map(str, argv)])
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_binary_results_file_is_one_line_naming_it(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_bytes(bytes(range(256)) * 4)
    assert run_leaderboard(capsys, results, "--out", tmp_path / "l.md") == (2, [
        f"musiczoo leaderboard: error: {results}: not a text file (invalid UTF-8), so not a results file of JSON lines"])
    assert not (tmp_path / "l.md").exists()


@pytest.mark.parametrize("field, value, message", [
    ("seed", None, "'seed' must be an integer, not null"),
    ("seed", "0", "'seed' must be an integer, not \"0\""),
    ("synthetic", None, "'synthetic' must be true or false, not null"),
    ("metrics", {"test/acc": "high"}, "'metrics' must be an object of numbers (or null), not {\"test/acc\": \"high\"}"),
    ("architecture", ..., "'architecture' must be a string, not missing"),
])
def test_a_record_the_tables_cannot_use_names_the_file_line_and_field(tmp_path, capsys, field, value, message):
    bad = record("fcn", "mel", 1, 0.6)
    if value is ...:
        del bad[field]
    else:
        bad[field] = value
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(record("fcn", "mel", 0, 0.5)) + "\n" + json.dumps(bad) + "\n")
    assert run_leaderboard(capsys, results, "--out", tmp_path / "l.md") == (
        2, [f"musiczoo leaderboard: error: {results}, line 2: {message}"])
    assert not (tmp_path / "l.md").exists() and not (tmp_path / "benchmarks").exists()


def test_figures_go_beside_out_wherever_it_is_run_from(tmp_path, monkeypatch):
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in HAND_WRITTEN) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "board" / "leaderboard.md"
    leaderboard([str(tmp_path / "r.jsonl"), "--out", str(out)])
    picture = tmp_path / "board" / "benchmarks" / "figures" / "synthetic_gtzan_fault_filtered.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(elsewhere.iterdir())
    text = out.read_text()
    assert "](benchmarks/figures/synthetic_gtzan_fault_filtered.png)" in text
    # the default is left out of the command that remakes the page
    assert f"then `musiczoo leaderboard {tmp_path / 'r.jsonl'} --out {out}`" in text


def baseline_record(**extra) -> dict:
    return {"kind": "baseline", "status": "ok", "baseline": "mfcc_stats_logreg", "dataset": "gtzan",
            "split": "fault_filtered", "synthetic": True, "metrics": {"test/acc": 0.456, "test/f1_macro": 0.321},
            "C": 0.1, "clips": {"train": 244, "val": 88, "test": 77}, "features": "MFCC mean+std", **extra}


def test_the_hand_crafted_baseline_is_shown_under_the_models_of_its_split(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    other_split = baseline_record(split="artist", metrics={"test/acc": 0.39})
    emotion = baseline_record(baseline="clip_features_ridge", dataset="deam", split="deam2015test", C=None,
                              metrics={"test/r2": 0.7, "test/r2_valence": 0.8, "test/r2_arousal": 0.6},
                              clips={"train": 92, "val": 10, "test": 18})
    del emotion["C"]
    emotion["alpha"] = {"valence": 10.0, "arousal": 1.0}
    ranked = baseline_record(baseline="chroma_oti", protocol="nothing fitted, the test part ranked", C=None,
                             metrics={"test/acc": 0.2})
    results.write_text("".join(json.dumps(r) + "\n" for r in [*HAND_WRITTEN, baseline_record(), ranked, other_split, emotion]))
    leaderboard([str(results), "--out", str(tmp_path / "l.md")])
    text = (tmp_path / "l.md").read_text()
    section = text.split("## SYNTHETIC GTZAN, `fault_filtered` split")[1].split("\n## ")[0]
    assert "### Hand-crafted baseline: SYNTHETIC GTZAN, `fault_filtered` split" in section
    # each record's own protocol; a record without one (written before the field) was fitted
    assert ("Fitted on the training part, its regularisation chosen on the validation part, scored once on the "
            "test part; nothing fitted, the test part ranked, of the same split; deterministic, so n = 1.") in section
    assert "| mfcc_stats_logreg (C=0.1) | MFCC mean+std | 0.456 | 0.321 | 244 / 88 / 77 |" in section
    orphan = text.split("## Baselines without learned models")[1]
    # A column per metric any of them has; a regression baseline shows R² per target and what it tuned.
    assert "| baseline | features | accuracy | R² (mean over targets) | R² valence | R² arousal |" in orphan
    assert "| mfcc_stats_logreg (C=0.1) | MFCC mean+std | 0.390 | - | - | - | 244 / 88 / 77 |" in orphan
    assert ("| clip_features_ridge (alpha valence 10, arousal 1) | MFCC mean+std | - | 0.700 | 0.800 | 0.600 "
            "| 92 / 10 / 18 |") in orphan
    bad = baseline_record(metrics={"test/acc": "high"})
    results.write_text(json.dumps(bad) + "\n")
    assert run_leaderboard(capsys, results, "--out", tmp_path / "l2.md") == (
        2, [f"musiczoo leaderboard: error: {results}, line 1: 'metrics' must be an object of numbers, "
            f"not {{\"test/acc\": \"high\"}}"])


def test_a_subset_of_a_dataset_is_a_section_of_its_own_under_its_grids_title(tmp_path):
    """Cells of a grid entry with a ``title`` (here a subset of GTZAN, split by artist) get a section
    of that title, apart from the same dataset and split in another folder, with their baseline."""
    title = "REAL GTZAN excerpts (409 x 2-3 s, artist-disjoint split)"
    subset = [record("resnet_gru", t, s, 0.4 + 0.01 * s, synthetic=False, split="artist", root="data/excerpts",
                     title=title, cell=f"gtzan/resnet_gru-{t}-seed{s}") for t in ("mel", "mfcc") for s in (0, 1)]
    whole = [record("resnet_gru", "mel", 0, 0.7, synthetic=False, split="artist", root="data/gtzan", cell="whole/x")]
    baseline = baseline_record(synthetic=False, split="artist", root="data/excerpts")
    recommended = {"data": f"{title}, test part (77 tracks)", "synthetic": False, "models": "resnet_gru/mel",
                   "feature": "embedding", "k": 10, "library": "lib", "metrics": {"precision@10": 0.345, "map@10": 0.2}}
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in [*subset, *whole, baseline, recommended]))
    leaderboard([str(results), "--out", str(tmp_path / "l.md")])
    text = (tmp_path / "l.md").read_text()
    section = text.split(f"## {title}\n")[1].split("\n## ")[0]
    assert section.count("0.405 ± 0.007 (n=2)") == 2 and "4 cells" in section and "0.700" not in section
    assert "### Hand-crafted baseline: " + title in section and "| 0.456 |" in section
    assert (tmp_path / "benchmarks" / "figures" / "real_gtzan_excerpts_409_x_2_3_s_artist_disjoint_split.png").is_file()
    assert "| resnet_gru/mel | embedding | 0.345 | 0.200 |" in section
    assert text.count("0.345") == 1 and "## Content-based recommendation" not in text  # not repeated elsewhere
    assert "## GTZAN, `artist` split" in text and "Hand-crafted" not in text.split("## GTZAN, `artist` split")[1]
