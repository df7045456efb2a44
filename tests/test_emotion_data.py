"""Emotion data: DEAM, PMEmo and any CSV in their real layouts, the synthetic DEAM, and the ridge baseline."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.emotion import (
    DEAM_ANNOTATIONS,
    DEAM_DEV_CSV,
    DEAM_TEST_CSV,
    SCALE,
    DEAMDataModule,
    EmotionCSVDataModule,
    PMEmoDataModule,
    random_parts,
)
from datamodules.items import Item
from datamodules.synthetic_emotion import DEV_HEADER, TEST_HEADER, synth_song

DEAM_DEV_LINE = "song_id, valence_mean, valence_std, arousal_mean, arousal_std"  # as in the real file


@pytest.fixture(scope="module")
def mp3_bytes(tmp_path_factory) -> bytes:
    """Half a second of a 440 Hz tone as an mp3 file's bytes, copied wherever a song's audio goes."""
    path = tmp_path_factory.mktemp("tone") / "tone.mp3"
    t = np.arange(4000) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, format="MP3")
    return path.read_bytes()


def write_deam(root, dev_rows, test_rows, mp3: bytes, nested=True, no_audio=()):
    """A DEAM folder: the two static CSVs (the real headers, a space after each comma) and MEMD_audio."""
    folder = root / DEAM_ANNOTATIONS if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEAM_DEV_CSV).write_text("\n".join([DEAM_DEV_LINE, *dev_rows]) + "\n")
    (folder / DEAM_TEST_CSV).write_text("\n".join([", ".join(TEST_HEADER), *test_rows]) + "\n")
    (root / "MEMD_audio").mkdir(exist_ok=True)
    for row in [*dev_rows, *test_rows]:
        song = row.split(",")[0]
        if song and song not in no_audio:
            (root / "MEMD_audio" / f"{song}.mp3").write_bytes(mp3)
    return root


def dev_row(song, valence, arousal):
    return f"{song},{valence},0.94,{arousal},0.63"


def deam2015_row(song, valence, arousal):  # the 2015 file's columns: means, then the raters' maxima and minima
    return f"{song},{valence},1.1,6.1,0.9,2.2,0.8,{arousal},1.2,7.0,0.7,3.1,0.9"




def keys(items):
    return [it.key for it in items]


def test_deam_reads_the_real_layout_with_its_published_test_part(tmp_path, mp3_bytes):
    assert DEV_HEADER == tuple(name.strip() for name in DEAM_DEV_LINE.split(","))
    dev = [dev_row(i, round(1 + i * 0.19, 1), round(9 - i * 0.19, 1)) for i in range(1, 41)]
    root = write_deam(tmp_path / "deam", dev, [deam2015_row(2000 + i, 5.5, 3) for i in range(1, 11)], mp3_bytes)
    dm = DEAMDataModule(str(root))
    assert (dm.task, dm.label_names, dm.target_scale, dm.dataset_name) == ("regression", ["valence", "arousal"], (1.0, 9.0), "deam")
    assert dm.split_name == "deam2015test+random(val=0.1,seed=0)"
    assert dm.provenance == {"dataset": "deam", "split": dm.split_name, "synthetic": False}
    parts = dm.split_items()
    assert keys(parts["test"]) == [f"MEMD_audio/{2000 + i}.mp3" for i in range(1, 11)]  # the 2015 evaluation songs
    assert [it.target for it in parts["test"]] == [[5.5, 3.0]] * 10
    assert len(parts["val"]) == 4 and not set(keys(parts["train"])) & set(keys(parts["val"]))
    assert sorted(keys(parts["train"]) + keys(parts["val"])) == sorted(f"MEMD_audio/{i}.mp3" for i in range(1, 41))
    song7 = next(it for it in parts["train"] + parts["val"] if it.key == "MEMD_audio/7.mp3")
    assert song7.target == [2.3, 7.7] and song7.source == str(root / "MEMD_audio" / "7.mp3")  # valence first
    # Seeded: the same seed gives the same parts, another seed others; the test part never moves.
    assert DEAMDataModule(str(root)).split_items() == parts
    other = DEAMDataModule(str(root), seed=1, val_fraction=0.25).split_items()
    assert keys(other["test"]) == keys(parts["test"]) and len(other["val"]) == 10
    assert set(keys(other["val"])) != set(keys(parts["val"]))
    # The CSVs may lie directly in the root, too.
    flat = write_deam(tmp_path / "flat", dev, [deam2015_row(2001, 5.5, 3)], mp3_bytes, nested=False)
    assert keys(DEAMDataModule(str(flat)).split_items()["test"]) == ["MEMD_audio/2001.mp3"]


def test_deam_skips_bad_songs_naming_each_and_counting_them(tmp_path, mp3_bytes, caplog):
    dev = [dev_row(1, 5, 5), dev_row(2, "", 4), dev_row(3, 4, "n/a"), dev_row(4, 4, 4), dev_row(5, "nan", 2),
           "6,7", dev_row(7, 3, 3), dev_row(8, 3, 3)]
    root = write_deam(tmp_path, dev, [deam2015_row(2001, 5, 5), deam2015_row(2002, 12, 5)], mp3_bytes, no_audio={"4"})
    with caplog.at_level(logging.WARNING, logger="datamodules.emotion"):
        parts = DEAMDataModule(str(root)).split_items()
    assert sorted(keys(parts["train"] + parts["val"])) == ["MEMD_audio/1.mp3", "MEMD_audio/7.mp3", "MEMD_audio/8.mp3"]
    assert keys(parts["test"]) == ["MEMD_audio/2001.mp3"]
    text = caplog.text
    assert f"song 2 ({DEAM_DEV_CSV}, line 3): valence_mean is empty" in text
    assert f"song 3 ({DEAM_DEV_CSV}, line 4): arousal_mean 'n/a' is not a number" in text
    assert f"song 4 ({root / 'MEMD_audio' / '4.mp3'}): no audio file" in text
    assert f"song 5 ({DEAM_DEV_CSV}, line 6): valence_mean is 'nan'" in text
    assert f"song 6 ({DEAM_DEV_CSV}, line 7): arousal_mean is empty" in text
    assert f"song 2002 ({DEAM_TEST_CSV}, line 3): valence_mean 12 is outside the scale 1-9" in text
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert summary == ["deam: skipped 6 of 10 songs: 2, 3, 4, 5, 6, 2002"]


def test_deam_errors_name_the_file_and_what_is_missing(tmp_path, mp3_bytes):
    with pytest.raises(FileNotFoundError, match=f"{DEAM_DEV_CSV} and {DEAM_TEST_CSV} in .*song_level or in"):
        DEAMDataModule(str(tmp_path)).split_items()
    root = write_deam(tmp_path, [dev_row(1, 5, 5)], [deam2015_row(2001, 5, 5)], mp3_bytes)
    (root / DEAM_ANNOTATIONS / DEAM_DEV_CSV).write_text("song_id, valence_mean, valence_std\n1,5,1\n")
    with pytest.raises(ValueError, match=rf"{DEAM_DEV_CSV}: missing column\(s\) 'arousal_mean'; its columns are "
                                         r"'song_id', 'valence_mean', 'valence_std'"):
        DEAMDataModule(str(root)).split_items()
    (root / DEAM_ANNOTATIONS / DEAM_DEV_CSV).write_text(DEAM_DEV_LINE + "\n" + dev_row(1, "", 5) + "\n")
    (root / DEAM_ANNOTATIONS / DEAM_TEST_CSV).write_text(", ".join(TEST_HEADER) + "\n")
    with pytest.raises(ValueError, match="no usable song"):
        DEAMDataModule(str(root)).split_items()


def test_pmemo_maps_its_0_1_scale_onto_1_9_and_splits_at_random(tmp_path, mp3_bytes, caplog):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "chorus").mkdir()
    rows = [f"{i},{(i % 11) / 10},{(i % 5) / 4}" for i in range(1, 31)] + ["31,1.2,0.5"]
    (tmp_path / "annotations" / "static_annotations.csv").write_text("musicId,Arousal(mean),Valence(mean)\n" + "\n".join(rows))
    for i in range(1, 32):
        (tmp_path / "chorus" / f"{i}.mp3").write_bytes(mp3_bytes)
    dm = PMEmoDataModule(str(tmp_path))
    assert (dm.task, dm.label_names, dm.target_scale, dm.dataset_name) == ("regression", ["valence", "arousal"], SCALE, "pmemo")
    assert dm.split_name == "random(val=0.1,test=0.2,seed=0)"
    with caplog.at_level(logging.WARNING, logger="datamodules.emotion"):
        parts = dm.split_items()
    assert "song 31 (static_annotations.csv, line 32): Arousal(mean) 1.2 is outside the scale 0-1" in caplog.text
    assert [len(parts[p]) for p in ("train", "val", "test")] == [21, 3, 6]
    every = {it.key: it.target for p in parts.values() for it in p}
    assert len(every) == 30
    for i in range(1, 31):  # valence first: v * 8 + 1
        assert every[f"chorus/{i}.mp3"] == pytest.approx([(i % 5) / 4 * 8 + 1, (i % 11) / 10 * 8 + 1])
    assert every["chorus/10.mp3"] == pytest.approx([1.0, 9.0])
    assert PMEmoDataModule(str(tmp_path)).split_items() == parts
    assert PMEmoDataModule(str(tmp_path), seed=3).split_items() != parts
    shutil.move(tmp_path / "annotations" / "static_annotations.csv", tmp_path / "static_annotations.csv")
    assert PMEmoDataModule(str(tmp_path)).split_items() == parts  # the CSV directly in the root


def test_emotion_csv_with_its_own_scale_with_and_without_a_split_column(tmp_path, mp3_bytes, caplog):
    (tmp_path / "clips" / "a").mkdir(parents=True)
    lines = ["file,valence,arousal,part"]
    for i in range(20):
        (tmp_path / "clips" / "a" / f"{i}.mp3").write_bytes(mp3_bytes)
        lines.append(f"clips/a/{i}.mp3,{(i - 10) / 10},{-(i - 10) / 10},{['train', 'valid', 'test', 'train'][i % 4]}")
    lines += ["clips/a/0.mp3,0,0,train", "clips/missing.mp3,0,0,train", "clips/a/1.mp3,0,0,dev"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    dm = EmotionCSVDataModule(str(tmp_path), "labels.csv", scale=(-1, 1), split_column="part")
    assert (dm.dataset_name, dm.split_name, dm.target_scale, dm.label_names) == ("emotion_csv", "column:part", SCALE,
                                                                          ["valence", "arousal"])
    with caplog.at_level(logging.WARNING, logger="datamodules.emotion"):
        parts = dm.split_items()
    assert keys(parts["val"]) == [f"clips/a/{i}.mp3" for i in range(1, 20, 4)]
    assert keys(parts["test"]) == [f"clips/a/{i}.mp3" for i in range(2, 20, 4)]
    assert len(parts["train"]) == 10
    assert parts["val"][0].target == pytest.approx([5 + (1 - 10) / 10 * 4, 5 - (1 - 10) / 10 * 4])  # -1..1 -> 1..9
    assert "clips/a/0.mp3 is listed before; the first row is kept" in caplog.text
    assert f"song clips/missing.mp3 ({tmp_path / 'clips' / 'missing.mp3'}): no audio file" in caplog.text
    assert "part 'dev' is not one of train, val, test" in caplog.text
    assert "emotion_csv: skipped 3 of 23 songs" in caplog.text

    random = EmotionCSVDataModule(str(tmp_path), str(tmp_path / "labels.csv"), targets=["arousal"], scale=(-1, 1))
    assert random.split_name == "random(val=0.1,test=0.2,seed=0)" and random.label_names == ["arousal"]
    parts = random.split_items()
    assert [len(parts[p]) for p in ("train", "val", "test")] == [14, 2, 4]  # the 20 files, each once
    assert parts == random.split_items()
    with pytest.raises(ValueError, match=r"labels.csv: missing column\(s\) 'mood'"):
        EmotionCSVDataModule(str(tmp_path), "labels.csv", targets=["mood"]).split_items()
    with pytest.raises(ValueError, match="low < high"):
        EmotionCSVDataModule(str(tmp_path), "labels.csv", scale=(1, 1))


def test_random_parts_are_seeded_disjoint_and_stable_when_a_clip_goes():
    items = [Item(f"{i}.mp3", f"{i}.mp3", [5.0, 5.0]) for i in range(200)]
    parts = random_parts(items, {"val": 0.1, "test": 0.2}, seed=0)
    assert [len(parts[p]) for p in ("train", "val", "test")] == [140, 20, 40]
    assert sorted(keys(parts["train"] + parts["val"] + parts["test"]), key=lambda k: int(k[:-4])) == keys(items)
    assert parts == random_parts(items, {"val": 0.1, "test": 0.2}, seed=0)
    fewer = random_parts(items[1:], {"val": 0.1, "test": 0.2}, seed=0)
    assert len(set(keys(fewer["test"])) ^ set(keys(parts["test"]))) <= 2


def test_a_regression_dataset_is_served_as_float_targets(tmp_path):
    lines = ["file,valence,arousal"]
    for i in range(6):
        sf.write(tmp_path / f"{i}.wav", np.random.default_rng(i).uniform(-0.3, 0.3, 8000).astype(np.float32), 8000)
        lines.append(f"{i}.wav,{1 + i},{9 - i}")
    (tmp_path / "va.csv").write_text("\n".join(lines))
    dm = EmotionCSVDataModule(str(tmp_path), "va.csv", split_column=None, val_fraction=0.2, test_fraction=0.2,
                              sample_rate=8000, chunk_seconds=0.5, batch_size=2, cache_dir=str(tmp_path / "cache"),
                              decode_workers=1)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["target"].dtype == torch.float32 and batch["target"].shape == (1, 2)
    key = batch["key"][0]
    i = int(key.split(".")[0])
    assert batch["target"][0].tolist() == [1.0 + i, 9.0 - i]


def test_synth_deam_writes_the_real_layout_with_targets_the_audio_carries(tmp_path, monkeypatch, caplog):
    """``musiczoo synth deam`` -> DEAMDataModule reads it -> the clip-feature ridge baseline explains
    both targets on the test part (R^2 > 0.3), with metrics equal to scikit-learn's and numpy's."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    import benchmarks.emotion_baseline as baseline
    from benchmarks.baselines import check_baseline
    from benchmarks.records import read_records
    from zoo.cli import main

    out = tmp_path / "deam"
    main(["synth", "deam", str(out), "--n-songs", "100", "--seconds", "3", "--sample-rate", "16000", "--seed", "1"])
    assert (out / DEAM_ANNOTATIONS / DEAM_DEV_CSV).read_text().splitlines()[0] == DEAM_DEV_LINE
    assert (out / DEAM_ANNOTATIONS / DEAM_TEST_CSV).read_text().splitlines()[0] == ", ".join(TEST_HEADER)
    dm = DEAMDataModule(str(out))
    parts = dm.split_items()
    assert dm.synthetic and keys(parts["test"]) == [f"MEMD_audio/{2001 + i}.mp3" for i in range(15)]
    assert len(parts["train"]) + len(parts["val"]) == 85 and len(parts["val"]) == 8
    assert sf.info(out / "MEMD_audio" / "2015.mp3").samplerate == 16000
    x, valence, arousal = synth_song(2015, seed=1, seconds=3, sample_rate=16000)
    again = synth_song(2015, seed=1, seconds=3, sample_rate=16000)
    assert np.array_equal(x, again[0]) and (valence, arousal) == again[1:]  # a pure function of (seed, song)
    assert not np.array_equal(x, synth_song(2015, seed=2, seconds=3, sample_rate=16000)[0])
    assert x.dtype == np.float32 and x.shape == (48000,) and 0 < np.abs(x).max() <= 1
    target = next(it.target for it in parts["test"] if it.key.endswith("/2015.mp3"))
    assert np.abs(np.array(target) - [valence, arousal]).max() < 1.5  # the annotation is the target plus rater noise

    broken = parts["train"][0]
    (out / broken.key).write_bytes(b"")  # an empty mp3: the baseline skips it, names it and counts it
    captured = []

    def features(paths, progress=False):
        result = real_features(paths, progress)
        captured.append(result)
        return result

    real_features = baseline.emotion_features
    monkeypatch.setattr(baseline, "emotion_features", features)
    with caplog.at_level(logging.WARNING, logger="benchmarks.emotion_baseline"):
        record = baseline.main(["--root", str(out), "--results", str(tmp_path / "results.jsonl")])
    assert broken.key in caplog.text
    assert read_records(tmp_path / "results.jsonl") == [record]
    check_baseline("results.jsonl, line 1", record)
    assert (record["kind"], record["dataset"], record["split"], record["synthetic"]) == ("baseline", "deam", dm.split_name, True)
    assert record["skipped"] == {"train": 1, "val": 0, "test": 0}
    assert record["clips"] == {"train": len(parts["train"]) - 1, "val": 8, "test": 15}
    m = record["metrics"]
    assert m["test/r2_valence"] > 0.3 and m["test/r2_arousal"] > 0.3, m

    # The same figures by hand: scikit-learn's ridge with the chosen alphas, its R^2, numpy's r, CCC's formula.
    (x_train, _), (x_val, _), (x_test, _) = captured
    y = {name: np.array([it.target for it in parts[name] if it.key != broken.key]) for name in ("train", "val", "test")}
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1

    def scaled(x):
        return (x - mean) / std

    for k, name in enumerate(["valence", "arousal"]):
        val_r2 = {a: r2_score(y["val"][:, k], Ridge(alpha=a).fit(scaled(x_train), y["train"][:, k]).predict(scaled(x_val)))
                  for a in baseline.ALPHA_GRID}
        assert record["alpha"][name] == max(val_r2, key=lambda a: (val_r2[a], a))
        p = Ridge(alpha=record["alpha"][name]).fit(scaled(x_train), y["train"][:, k]).predict(scaled(x_test))
        t = y["test"][:, k]
        assert m[f"test/r2_{name}"] == pytest.approx(r2_score(t, p), abs=1e-6)
        assert m[f"test/pearson_{name}"] == pytest.approx(np.corrcoef(t, p)[0, 1], abs=1e-6)
        ccc = 2 * np.cov(t, p, bias=True)[0, 1] / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
        assert m[f"test/ccc_{name}"] == pytest.approx(ccc, abs=1e-6)
    for metric in ("r2", "pearson", "ccc"):
        assert m[f"test/{metric}"] == pytest.approx((m[f"test/{metric}_valence"] + m[f"test/{metric}_arousal"]) / 2)


def test_synth_deam_refuses_sizes_outside_deams_ids(tmp_path, capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["synth", "deam", str(tmp_path), "--n-songs", "5000"])
    assert stopped.value.code == 2
    assert "musiczoo synth: error: n_songs must be 3 to 2058" in capsys.readouterr().err
