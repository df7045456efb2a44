"""Version identification, the parts: the retrieval metrics against hand-computed examples, the
loss, the key-shift augmentation, and the clique tables of the real releases read from real files."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.covers import (CliqueTableDataModule, Covers80DataModule, WorkBatches, read_clique_table,
                                read_covers80)
from zoo.problems import batch_hard_triplet, retrieval_scores
from zoo.task import KeyShift, MusicTask


def at_angles(degrees: list[float]) -> torch.Tensor:
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], 1)


def test_retrieval_scores_match_a_hand_computed_example():
    """Four performances at 0, 20, 50 and 90 degrees, works A B A B. Query 0 ranks 1 (B), 2 (A),
    3: its version is 2nd, AP 1/2; query 1 ranks 0, 2, 3 (B): 3rd, AP 1/3; query 2 ranks 1, 3, 0
    (A): AP 1/3; query 3 ranks 2, 1 (B): AP 1/2. MAP 5/12, MR1 (2+3+3+2)/4 = 2.5, P@10 1/10."""
    scores = retrieval_scores(at_angles([0, 20, 50, 90]), torch.tensor([0, 1, 0, 1]))
    assert scores["ap"].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 3, 1 / 2])
    assert scores["map"].item() == pytest.approx(5 / 12)
    assert scores["mr1"].item() == pytest.approx(2.5)
    assert scores["p10"].item() == pytest.approx(0.1)
    assert scores["queries"].item() == 4


def test_retrieval_scores_with_three_performances_and_a_work_performed_once():
    """Angles 0, 10, 60, 30, 80, 45; works 0 0 0 1 1 2. By hand: query 0 finds 1 (1st) and 2 (4th):
    AP (1 + 2/4)/2 = 0.75, first at 1, 2 of the top 10; query 1 likewise 0.75; query 2 ranks 5, 4,
    3, 1, 0: AP (1/4 + 2/5)/2 = 0.325, first at 4; query 3 finds 4 5th: AP 0.2; query 4 finds 3
    3rd: AP 1/3; work 2's one performance asks nothing. MAP 0.47167, MR1 2.8, P@10 0.16."""
    scores = retrieval_scores(at_angles([0, 10, 60, 30, 80, 45]), torch.tensor([0, 0, 0, 1, 1, 2]))
    assert scores["ap"][:5].tolist() == pytest.approx([0.75, 0.75, 0.325, 0.2, 1 / 3])
    assert math.isnan(scores["ap"][5].item()) and scores["queries"].item() == 5
    assert scores["map"].item() == pytest.approx((0.75 + 0.75 + 0.325 + 0.2 + 1 / 3) / 5)
    assert scores["mr1"].item() == pytest.approx(2.8)
    assert scores["p10"].item() == pytest.approx(0.16)
    # Blocks of queries change nothing; any integer work ids will do.
    again = retrieval_scores(at_angles([0, 10, 60, 30, 80, 45]), torch.tensor([7, 7, 7, -3, -3, 99]), block=2)
    assert again["map"].item() == pytest.approx(scores["map"].item())


def test_perfect_and_random_embeddings():
    works = torch.arange(50).repeat_interleave(4)
    perfect = torch.nn.functional.one_hot(works, 50).double() + 0.01 * torch.randn(200, 50, dtype=torch.float64)
    best = retrieval_scores(perfect, works)
    assert (best["map"].item(), best["mr1"].item(), best["p10"].item()) == pytest.approx((1.0, 1.0, 0.3))
    chance = retrieval_scores(torch.randn(200, 16, generator=torch.Generator().manual_seed(0)), works)
    assert chance["map"].item() < 0.1 and chance["mr1"].item() > 20


def test_batch_hard_triplet_is_zero_when_works_are_apart_and_positive_when_mixed():
    target = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert batch_hard_triplet(apart, target, margin=0.3).item() == 0.0
    mixed = apart[[0, 2, 1, 3]]
    assert batch_hard_triplet(mixed, target, margin=0.3).item() > 1.0
    assert batch_hard_triplet(apart, torch.tensor([0, 1, 2, 3]), margin=0.3).item() == 0.0  # no positive


def test_the_version_loss_learns_training_works_and_ignores_the_evaluation_works_in_its_cross_entropy():
    task = MusicTask(architecture="fcn", transform="cqt", num_classes=2, task="versions", sample_rate=16000,
                     label_names=["W_1", "W_2"], triplet_weight=0.0)
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [9.0, -9.0]])
    expected = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    loss = task.loss(logits, torch.tensor([0, 1, 5]), torch.randn(3, 8))  # work 5: an evaluation work
    assert loss.item() == pytest.approx(expected.item())
    assert task.monitor == "val/map"


def test_key_shift_moves_each_example_by_whole_semitones():
    """cqt with 24 bins per octave: a semitone is 2 rows, rows shifted past the edge are zeros;
    chroma wraps round. Every example moves by at most key_shift semitones, and shifts vary."""
    torch.manual_seed(0)
    spec = torch.randn(64, 1, 48, 5)
    cqt = MusicTask(architecture="fcn", transform="cqt", sample_rate=22050, key_shift=3,
                    transform_params={"bins_per_octave": 24, "n_octaves": 2, "f_min": 440.0}).net.spec_augment
    assert (cqt.rows_per_semitone, cqt.wrap) == (2, False)
    moved, seen = cqt(spec), set()
    for x, y in zip(spec, moved):
        shifts = [s for s in range(-3, 4) if torch.equal(y[:, max(2 * s, 0):48 + min(2 * s, 0)],
                                                          x[:, max(-2 * s, 0):48 - max(2 * s, 0)])]
        assert len(shifts) == 1, shifts
        seen.add(shifts[0])
        s = shifts[0]
        assert (y[:, :2 * s] == 0).all() if s > 0 else (y[:, 48 + 2 * s:] == 0).all()
    assert len(seen) >= 5
    chroma = KeyShift(5, 1, wrap=True)
    wheel = torch.randn(32, 1, 12, 3)
    for x, y in zip(wheel, chroma(wheel)):
        assert any(torch.equal(y, x.roll(s, dims=1)) for s in range(-5, 6))
    with pytest.raises(ValueError, match="pitch-aware front-end"):
        MusicTask(architecture="fcn", transform="mel", sample_rate=22050, key_shift=2)


# ---- clique tables -------------------------------------------------------------------------------
def write_tone(path, hz: float, seconds: float = 1.0, sr: int = 8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)


def test_a_clique_table_csv_with_files_and_bad_rows(tmp_path, caplog):
    for w in range(6):
        for p in range(3):
            write_tone(tmp_path / "audio" / f"w{w}_p{p}.wav", 200 + 30 * w + p)
    rows = ["work_id,performance_id,file"] + [f"W{w},P{w}{p},audio/w{w}_p{p}.wav" for w in range(6) for p in range(3)]
    rows += ["W0,P00,audio/w0_p0.wav", ",P99,audio/w0_p0.wav", "W9,P91,audio/missing.wav"]
    (tmp_path / "cliques.csv").write_text("\n".join(rows) + "\n")
    table = read_clique_table(tmp_path / "cliques.csv", tmp_path)
    assert len(table.rows) == 18 and table.read == 21 and len(table.skipped) == 3
    assert any("listed before" in s for s in table.skipped) and any("work_id is empty" in s for s in table.skipped)
    assert any("missing.wav" in s and "no audio file" in s for s in table.skipped)
    with caplog.at_level(logging.WARNING):
        dm = CliqueTableDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.2, seed=3, sample_rate=8000)
    assert "skipped 3 of 21 performances" in caplog.text
    parts = dm.split_items()
    works = {name: {it.key.split("/")[0] for it in items} for name, items in parts.items()}
    assert all(not works[a] & works[b] for a, b in [("train", "val"), ("train", "test"), ("val", "test")])
    assert [len(works[n]) for n in ("train", "val", "test")] == [4, 1, 1]
    assert dm.label_names == sorted(works["train"]) and dm.num_classes == 4 and dm.task == "versions"
    # Training works are the classes 0..3; the evaluation works' indices come after them.
    assert {it.target for it in parts["train"]} == {0, 1, 2, 3}
    assert {it.target for n in ("val", "test") for it in parts[n]} == {4, 5}
    assert dm.split_name == "by-work(val=0.2,test=0.2,seed=3)"
    assert CliqueTableDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.2, seed=3).split_items() == parts


def test_shs100k_and_da_tacos_layouts_find_the_audio_by_work_and_performance(tmp_path):
    """SHS100K's tab-separated set_id/ver_id lists, Da-TACOS's W_/P_ ids: the audio is <work>/<performance>.<ext>."""
    write_tone(tmp_path / "W_1" / "P_1.wav", 220)
    write_tone(tmp_path / "W_1" / "P_2.flac", 230)
    write_tone(tmp_path / "W_2" / "P_3.wav", 240)
    (tmp_path / "shs.tsv").write_text("set_id\tver_id\ttitle\tperformer\nW_1\tP_1\tA\tx\nW_1\tP_2\tA\ty\n"
                                      "W_2\tP_3\tB\tz\nW_2\tP_4\tB\tgone\n")
    table = read_clique_table(tmp_path / "shs.tsv", tmp_path)
    assert [(w, p, f.name) for w, p, f, _ in table.rows] == [("W_1", "P_1", "P_1.wav"), ("W_1", "P_2", "P_2.flac"),
                                                             ("W_2", "P_3", "P_3.wav")]
    assert table.skipped == ["P_4 (shs.tsv, line 5): no audio file"]
    (tmp_path / "bad.csv").write_text("song,artist\na,b\n")
    with pytest.raises(ValueError, match=r"bad.csv: a clique table needs a work column .* its columns are 'song', 'artist'"):
        read_clique_table(tmp_path / "bad.csv", tmp_path)


def test_a_split_column_is_the_split_and_may_not_put_a_work_in_two_parts(tmp_path):
    for w in range(3):
        for p in range(2):
            write_tone(tmp_path / f"{w}_{p}.wav", 300 + 20 * w + p)
    parts = {0: "train", 1: "val", 2: "test"}
    lines = ["work_id,performance_id,file,split"] + [f"W{w},P{w}{p},{w}_{p}.wav,{parts[w]}" for w in range(3) for p in range(2)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    dm = CliqueTableDataModule(str(tmp_path), table="t.csv")
    assert dm.split_name == "column:split" and [len(dm.split_items()[n]) for n in ("train", "val", "test")] == [2, 2, 2]
    (tmp_path / "t.csv").write_text("\n".join(lines[:-1] + ["W0,P21,2_1.wav,test"]) + "\n")
    with pytest.raises(ValueError, match="work W0 is in the training part and in an evaluation part"):
        CliqueTableDataModule(str(tmp_path), table="t.csv")


def test_covers80_lists_pair_line_by_line(tmp_path):
    audio = tmp_path / "covers32k"
    pairs = [("A_Whiter_Shade_Of_Pale", "annie_lennox+Medusa+03", "procol_harum+Greatest+01"),
             ("Abracadabra", "steve_miller_band+Abracadabra+01", "sugar_ray+14_59+11"),
             ("Across_the_Universe", "beatles+Let_It_Be+03", "fiona_apple+Pleasantville+01")]
    for i, (work, a, b) in enumerate(pairs):
        write_tone(audio / work / f"{a}.wav", 200 + i)  # Covers80 is mp3; any audio extension is found
        write_tone(audio / work / f"{b}.wav", 210 + i)
    (audio / "list1.list").write_text("".join(f"{w}/{a}\n" for w, a, _ in pairs))
    (audio / "list2.list").write_text("".join(f"{w}/{b}\n" for w, _, b in pairs[:2]) + "Abracadabra/sugar_ray+14_59+11\n")
    table = read_covers80(tmp_path)
    assert [w for w, *_ in table.rows] == ["A_Whiter_Shade_Of_Pale"] * 2 + ["Abracadabra"] * 2
    assert table.skipped == ["Across_the_Universe/beatles+Let_It_Be+03 and Abracadabra/sugar_ray+14_59+11 "
                             "(line 3 of both lists): their work folders differ"]
    assert Covers80DataModule(str(tmp_path), val_fraction=0.0, test_fraction=0.0).label_names == [
        "A_Whiter_Shade_Of_Pale", "Abracadabra"]
    with pytest.raises(FileNotFoundError, match="no Covers80 lists"):
        read_covers80(tmp_path / "covers32k" / "Abracadabra")


def test_work_batches_keep_a_works_performances_together_and_use_every_clip_once():
    works = [w for w in range(10) for _ in range(4)]
    sampler = WorkBatches(works, per_work=2, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(40)) and len(sampler) == 40
    pairs = [(works[order[i]], works[order[i + 1]]) for i in range(0, 40, 2)]
    assert all(a == b for a, b in pairs)
    assert list(sampler) != order  # a new epoch, a new order
