"""MTATDataModule on the real release format, the decode cache under it, the CLI, every config."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import datamodules.cache as audio_cache
from datamodules.mtat import MTATDataModule
from datamodules.mtat_format import ANNOTATIONS_FILE, MTAT_TAGS, top50_tags
from datamodules.mtat_split import SplitEntry, write_top50_split
from datamodules.split_lists import MissingListError
from datamodules.synthetic_mtat import make_synthetic_mtat, part_sizes
from zoo.cli.train import config_path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))
SR = 16000


def _quoted(values) -> str:
    return "\t".join(f'"{v}"' for v in values) + "\n"


def _hand_release(root: Path, rows: list[tuple[int, str, set[str]]]) -> Path:
    """A release written by hand: real header and quoting, one short mp3 per row."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ANNOTATIONS_FILE, "w", newline="") as f:
        f.write(_quoted(["clip_id", *MTAT_TAGS, "mp3_path"]))
        for clip_id, mp3, tags in rows:
            f.write(_quoted([clip_id, *(int(t in tags) for t in MTAT_TAGS), mp3]))
    t = np.arange(SR // 2) / SR
    for i, (_, mp3, _) in enumerate(rows):
        (root / mp3).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / mp3, 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t), SR, format="MP3")
    return root


@pytest.fixture()
def hand(tmp_path):
    """Two clips of each part of the split (real names, in their parts' folders), plus one clip
    outside the split (as on the real release); the split list is written as download derives it."""
    train = [SplitEntry(7, "0/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-117-146.mp3"),
             SplitEntry(12, "9/lvx_nova-lvx_nova-01-contimune-30-59.mp3")]
    val = [SplitEntry(15, "c/lvx_nova-lvx_nova-01-contimune-88-117.mp3"), SplitEntry(21, "c/tilopa-turkishauch-01-kashmir-0-29.mp3")]
    test = [SplitEntry(30, "d/drumsound-the_art_of_sound-02-loop-0-29.mp3"), SplitEntry(44, "f/jamie_janover-evolutions-03-sun-58-87.mp3")]
    write_top50_split(tmp_path / "mtat" / "splits", {"train": train, "val": val, "test": test})
    rows = [
        (*train[0], {"guitar", "metal", "female voice", "female singer"}),  # the hand-checked clip
        (*train[1], {"classical", "no vocals"}),
        (*val[0], {"techno"}), (*val[1], {"rock"}), (*test[0], {"piano"}), (*test[1], {"choral"}),
        (60001, "0/outside-the-split-0-29.mp3", {"female singer"}),
    ]
    return _hand_release(tmp_path / "mtat", rows), rows


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A synthetic release: 24 split clips, 3 of them broken (empty/truncated) in the train split."""
    return make_synthetic_mtat(tmp_path_factory.mktemp("synthetic_mtat"), seed=0, n_clips=24, seconds=1.5,
                               sample_rate=SR, n_broken=3)


def _module(root, cache, **kw) -> MTATDataModule:
    kw = {"chunk_seconds": 1.0, "batch_size": 4, "decode_workers": 1, **kw}
    return MTATDataModule(str(root), cache_dir=str(cache), **kw)


# ---- labels and split ----------------------------------------------------------------------------
def test_defaults_are_the_literatures():
    dm = MTATDataModule("nowhere")
    assert (dm.task, dm.num_classes, dm.label_names) == ("multilabel", 50, top50_tags())
    assert dm.sample_rate == 16000 and dm.provenance == {"dataset": "mtat", "split": "top50", "synthetic": False}
    # The chunk length has one default (3 s); the literature's 59,049-sample crop is set by the MTAT
    # short-chunk configs, and 29 s by the full-clip ones.
    for name in ("mtat_short_chunk.yaml", "mtat_resnet_vit.yaml", "mtat_synthetic_tiny.yaml", "mtat_full_clip.yaml"):
        data = yaml.safe_load(config_path(name).read_text())["data"]["init_args"]
        dm = MTATDataModule("nowhere", chunk_seconds=data["chunk_seconds"])
        assert dm.chunk_size == (464000 if name == "mtat_full_clip.yaml" else 59049), name


def test_targets_from_the_real_annotation_format(hand, tmp_path):
    root, rows = hand
    dm = _module(root, tmp_path / "cache")
    dm.prepare_data()
    dm.setup()
    assert {s: [c.key for c in dm.clips(s)] for s in ("train", "val", "test")} == {
        "train": [rows[0][1], rows[1][1]], "val": [rows[2][1], rows[3][1]], "test": [rows[4][1], rows[5][1]]}
    target = dict((c.key, c.target) for c in dm.clips("train"))[rows[0][1]]
    # guitar is column 0, metal 47, female voice 48; "female singer" is not a top-50 tag.
    assert [i for i, v in enumerate(target) if v] == [0, 47, 48]
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (2, SR) and batch["target"].dtype == torch.float32


def test_path_disagreeing_with_the_split_is_an_error(hand, tmp_path):
    root, rows = hand
    text = (root / ANNOTATIONS_FILE).read_text()
    (root / ANNOTATIONS_FILE).write_text(text.replace(rows[2][1], "c/some-other-clip-0-29.mp3"))
    with pytest.raises(ValueError, match=rf"clip_id {rows[2][0]} has mp3_path 'c/some-other-clip-0-29.mp3'.*"
                                         rf"{rows[2][1]}"):
        _module(root, tmp_path / "cache").prepare_data()


def test_missing_files_are_an_error_listing_them(hand, tmp_path):
    root, rows = hand
    for row in (rows[1], rows[4]):
        (root / row[1]).unlink()
    with pytest.raises(FileNotFoundError, match=r"2 mp3 files of the MTAT top-50 split are missing") as err:
        _module(root, tmp_path / "cache").prepare_data()
    assert rows[1][1] in str(err.value) and rows[4][1] in str(err.value)


def test_no_split_lists_is_one_line_naming_the_command(hand, tmp_path):
    root, _ = hand
    for tsv in (root / "splits").glob("*.tsv"):
        tsv.unlink()
    with pytest.raises(MissingListError, match=r"^MagnaTagATune top-50 split needs its lists \(top50_train.tsv is not in "
                                               r".*: run musiczoo download mtat --root DIR \(or --lists-only\)$"):
        _module(root, tmp_path / "cache").prepare_data()


def test_no_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations_final.csv"):
        _module(tmp_path, tmp_path / "cache").prepare_data()


# ---- the decode cache on the synthetic release -----------------------------------------------------
def test_broken_files_are_skipped_and_counted_then_the_cache_is_reused(release, tmp_path, caplog, monkeypatch):
    broken = sorted(p.relative_to(release).as_posix() for p in release.rglob("*.mp3") if p.stat().st_size <= 300)
    dm = _module(release, tmp_path / "cache", decode_workers=2)
    train_keys = {it.key for it in dm.split_items()["train"]}
    assert len(broken) == 3 and set(broken) <= train_keys  # the synthetic release puts them in train
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    assert "skipped 3 of 24 files" in caplog.text and all(k in caplog.text for k in broken)
    dm.setup()
    assert {c.key for c in dm.clips("train")} == train_keys - set(broken)
    assert sum(len(dm.clips(s)) for s in ("train", "val", "test")) == 21

    # A second run (new process in real life) decodes nothing and still reports the skips.
    monkeypatch.setattr(audio_cache.AudioCache, "build", lambda self: pytest.fail("the cache was rebuilt"))
    caplog.clear()
    again = _module(release, tmp_path / "cache")
    with caplog.at_level(logging.INFO):
        again.prepare_data()
    again.setup()
    assert "reusing audio cache" in caplog.text and "skipped 3 of 24 files" in caplog.text
    assert [c.key for c in again.clips("test")] == [c.key for c in dm.clips("test")]


def _cache_state(cache: Path) -> tuple[list[Path], list[Path]]:
    """(complete caches, leftover build folders) under ``cache``."""
    return sorted(cache.glob("mtat-*")), sorted(cache.glob(".mtat-*.building-*"))


def test_interrupted_build_leaves_no_complete_cache(release, tmp_path, monkeypatch):
    calls = []

    def interrupted(job):
        calls.append(job[0])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return decode(job)

    decode = audio_cache._decode
    monkeypatch.setattr(audio_cache, "_decode", interrupted)
    dm = _module(release, tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert _cache_state(tmp_path / "cache") == ([], [])  # nothing that looks complete, nothing left over
    monkeypatch.setattr(audio_cache, "_decode", decode)
    dm.prepare_data()  # the next run starts the build again and finishes it
    dm.setup()
    assert len(_cache_state(tmp_path / "cache")[0]) == 1 and len(dm.clips("train")) == part_sizes(24)["train"] - 3 == 14


def test_killed_build_is_rebuilt_from_scratch(release, tmp_path):
    """SIGKILL mid-build (no cleanup runs): the partial folder is never mistaken for a cache."""
    cache, marker = tmp_path / "cache", tmp_path / "decoded"
    script = textwrap.dedent(f"""
        import time
        import datamodules.cache as audio_cache
        from datamodules.mtat import MTATDataModule

        decode = audio_cache._decode
        def slow(job):
            out = decode(job)
            open({str(marker)!r}, "a").write("x")
            time.sleep(0.3)
            return out
        audio_cache._decode = slow
        MTATDataModule({str(release)!r}, cache_dir={str(cache)!r}, decode_workers=1).prepare_data()
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (marker.exists() and len(marker.read_text()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the build subprocess did not start decoding"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete, leftover = _cache_state(cache)
    assert complete == [] and len(leftover) == 1 and (leftover[0] / "audio.f16").stat().st_size > 0

    dm = _module(release, cache)
    dm.prepare_data()
    dm.setup()
    assert len(_cache_state(cache)[0]) == 1 and len(dm.clips("train")) == part_sizes(24)["train"] - 3 == 14


# ---- through the real CLI ---------------------------------------------------------------------------
def test_fit_and_test_through_the_cli_write_the_per_tag_table(release, tmp_path, monkeypatch):
    from zoo.cli import main

    monkeypatch.setattr(sys, "argv", ["musiczoo"])  # pytest's own arguments are not the CLI's
    common = [
        "--config", str(REPO / "benchmarks" / "configs" / "mtat_synthetic_tiny.yaml"),
        f"--data.init_args.root={release}", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        "--data.init_args.chunk_seconds=1.0", "--data.init_args.batch_size=4", "--data.init_args.decode_workers=1",
        '--model.model_params={"channels": [8, 8, 16, 16], "embed_dim": 16, "depth": 1, "num_heads": 2}',
        f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_progress_bar=false",
    ]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])
    (ckpt,) = (tmp_path / "run").rglob("best-epoch000.ckpt")
    main(["test", *common, f"--ckpt_path={ckpt}"])
    (table,) = (tmp_path / "run").rglob("per_tag_metrics.csv")
    lines = table.read_text().splitlines()
    assert lines[0] == "tag,roc_auc,pr_auc" and [line.rsplit(",", 2)[0] for line in lines[1:]] == top50_tags()
    scores = np.array([[float(v) for v in line.rsplit(",", 2)[1:]] for line in lines[1:]])
    defined = ~np.isnan(scores[:, 0])  # tags present and absent among the 6 test clips
    assert defined.sum() >= 5

    # The oracle: the checkpoint's clip-level probabilities (mean of each clip's chunk sigmoids,
    # averaged here by hand) on the same test chunks, scored per tag by scikit-learn.
    from sklearn.metrics import average_precision_score, roc_auc_score

    from zoo.checkpoint import load_checkpoint

    net = load_checkpoint(ckpt)
    dm = _module(release, tmp_path / "cache")  # the CLI's data: same release, cache, chunk length, batches
    dm.prepare_data()
    dm.setup("test")
    probs, targets = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            chunk_probs = net(batch["audio"]).sigmoid()
            probs += [chunk_probs[batch["clip"] == j].mean(0) for j in range(len(batch["key"]))]
            targets.append(batch["target"])
    probs, targets = torch.stack(probs).double().numpy(), torch.cat(targets).numpy()
    assert len(targets) == part_sizes(24)["test"] == 5
    assert defined.tolist() == [0 < targets[:, k].sum() < len(targets) for k in range(50)]
    rounded = 5e-5 + 1e-6  # the table's 4 decimals
    for k in np.flatnonzero(defined):
        tag = top50_tags()[k]
        assert scores[k, 0] == pytest.approx(roc_auc_score(targets[:, k], probs[:, k]), abs=rounded), tag
        assert scores[k, 1] == pytest.approx(average_precision_score(targets[:, k], probs[:, k]), abs=rounded), tag


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses_and_builds_its_model(config, monkeypatch):
    """The real CLI parser reads each shipped config; its model runs on the config's crop length."""
    from zoo.cli.train import build_cli
    from zoo.factory import create_model

    monkeypatch.setattr(sys, "argv", ["musiczoo"])
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as done:
        build_cli(["fit", "--config", str(config), "--print_config"])
    assert done.value.code == 0
    cfg = yaml.safe_load(out.getvalue())
    header = config.read_text().splitlines()[0]
    assert header.startswith("# ") and len(header) > 20  # every config says where its setup comes from
    for callback in cfg["trainer"]["callbacks"] or []:
        if callback["class_path"].endswith("ModelCheckpoint"):
            args = callback["init_args"]
            assert "/" not in args["filename"] and args["auto_insert_metric_name"] is False
            assert args["monitor"] in ("val/pr_auc", "val/roc_auc", "val/acc", "val/f1_macro", "val/loss")

    data = cfg["data"]["init_args"]
    num_classes = 50 if cfg["data"]["class_path"].endswith("MTATDataModule") else 10
    model = cfg["model"]
    net = create_model(model["architecture"], transform=model["transform"], num_classes=num_classes,
                       sample_rate=data["sample_rate"], transform_params=model["transform_params"],
                       **(model["model_params"] or {})).eval()
    samples = int(round(data["chunk_seconds"] * data["sample_rate"]))
    with torch.no_grad():
        assert net(torch.zeros(1, samples)).shape == (1, num_classes)
