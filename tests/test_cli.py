"""The real ``musiczoo`` command: fit/test through LightningCLI, extra verbs, name errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from zoo.cli import main
from zoo.cli.train import build_cli, config_path

def test_fit_then_test_through_the_cli(tiny_config, tmp_path, capsys):
    main(["fit", "--config", str(tiny_config)])
    # The shipped checkpointing: the best epoch by val/acc and last.ckpt, in <default_root_dir>/checkpoints.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    ckpt = tmp_path / "run" / "checkpoints" / "best-epoch000.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    hparams = saved["hyper_parameters"]
    # The data module's settings travel with the checkpoint, including that the data was synthetic.
    data_hparams = saved["datamodule_hyper_parameters"]
    assert data_hparams["split"] == "fault_filtered" and data_hparams["chunk_seconds"] == 0.5
    # The data module's provenance, linked into the task, says the data was synthetic.
    assert hparams["provenance"] == {"dataset": "gtzan", "split": "fault_filtered", "synthetic": True}
    assert hparams["chunk_seconds"] == 0.5
    # Linked from the data module: GTZAN's 10 genres, its sample rate, the task type.
    assert hparams["num_classes"] == 10 and hparams["task"] == "multiclass" and hparams["sample_rate"] == 8000
    assert hparams["label_names"][:3] == ["blues", "classical", "country"]
    main(["test", "--config", str(tiny_config), "--ckpt_path", str(ckpt)])
    out = capsys.readouterr().out
    assert "test/acc" in out and "test/f1_macro" in out
    assert list((tmp_path / "run" / "lightning_logs").glob("version_*/confusion_matrix.csv"))


@pytest.mark.parametrize("flag,message", [
    ("--model.architecture=resnet_lstm", "unknown model 'resnet_lstm'; valid models: crnn, fcn, resnet_gru"),
    ("--model.transform=wavelet", "unknown transform 'wavelet'; valid transforms: chroma, cqt, mel, mfcc, stft"),
])
def test_wrong_names_get_one_line(tiny_config, flag, message):
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(tiny_config), flag],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"musiczoo fit: error: {message}")
    assert "Traceback" not in proc.stderr


def test_models_lists_the_zoo_with_parameter_counts(capsys):
    main(["models", "resnet_*"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["model", "mel", "mfcc", "stft"]
    rows = {line.split()[0]: line.split()[1:4] for line in out[1:] if line.startswith("resnet")}
    assert set(rows) == {"resnet_gru", "resnet_vit"}
    assert all(count.endswith("M") and float(count[:-1]) > 0.1 for count in rows["resnet_gru"])


def test_synth_writes_the_gtzan_layout(tmp_path, capsys):
    main(["synth", "gtzan", str(tmp_path / "g"), "--seconds", "0.5", "--sample-rate", "8000", "--clips-per-genre", "2"])
    files = sorted(p.relative_to(tmp_path / "g").as_posix() for p in (tmp_path / "g").rglob("*.wav"))
    assert len(files) == 20 and "genres_original/blues/blues.00000.wav" in files


SHIPPED_CONFIGS = sorted(config_path("quickstart.yaml").parent.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds_what_it_names_through_the_cli(path, tmp_path):
    """The real LightningCLI parses the config and builds the model and data module it names,
    with the data module's values linked into the model."""
    cfg = yaml.safe_load(path.read_text())
    model, data = cfg["model"], cfg["data"]["init_args"]
    extra = []
    if cfg["data"]["class_path"] == "datamodules.covers.CliqueTableDataModule":  # its classes are the data's works
        from datamodules.synthetic_covers import make_synthetic_covers

        root = make_synthetic_covers(tmp_path / "covers", n_works=8, versions=2, seconds=1.0, sample_rate=data["sample_rate"])
        extra = [f"--data.init_args.root={root}"]
    cli = build_cli(["--config", str(path), f"--trainer.default_root_dir={tmp_path}", *extra], run=False)
    net = cli.model.net
    assert net.spec.architecture == model["architecture"]
    assert net.spec.transform == model["transform"]
    for key, value in (model.get("transform_params") or {}).items():
        assert net.frontend.config()[key] == value, key
    assert cli.datamodule.chunk_seconds == data["chunk_seconds"] == cli.model.hparams.chunk_seconds
    assert cli.datamodule.sample_rate == data["sample_rate"] == net.frontend.sample_rate
    assert cli.model.hparams.num_classes == len(cli.datamodule.label_names) == net.head.out_features
    assert cli.model.hparams.provenance == cli.datamodule.provenance
    assert net.spec.task == cli.datamodule.task and net.spec.target_scale == cli.datamodule.target_scale


def test_no_two_shipped_configs_differ_only_in_the_architecture():
    def without_architecture(path):
        cfg = yaml.safe_load(path.read_text())
        cfg["model"].pop("architecture")
        return cfg

    bodies = [without_architecture(p) for p in SHIPPED_CONFIGS]
    twins = [(a.name, b.name) for i, a in enumerate(SHIPPED_CONFIGS) for j, b in enumerate(SHIPPED_CONFIGS)
             if i < j and bodies[i] == bodies[j]]
    assert twins == []


@pytest.mark.parametrize("data_class", ["datamodules.gtzan.GTZANDataModule", "datamodules.mtat.MTATDataModule",
                                        "datamodules.folder.FolderDataModule", "datamodules.hf.HFDataModule"])
def test_print_config_lists_the_base_arguments_of_every_data_module(data_class):
    """Subclasses declare only their own arguments and pass ``**kwargs`` on; LightningCLI must still
    see, type and default the base's."""
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", f"--data={data_class}", "--data.root=x",
                           "--print_config"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    init_args = yaml.safe_load(proc.stdout)["data"]["init_args"]
    for name in ("root", "sample_rate", "chunk_seconds", "batch_size", "num_workers", "cache_dir", "decode_workers", "seed"):
        assert name in init_args, name
    assert init_args["chunk_seconds"] == 3.0 and init_args["batch_size"] == 16
    assert init_args["sample_rate"] == (16000 if data_class.endswith("MTATDataModule") else 22050)


def test_quickstart_runs_end_to_end_and_records_its_metrics(tmp_path, capsys):
    """The README's first command, shortened: 1-second clips, one epoch."""
    main(["quickstart", "--out", str(tmp_path / "qs"), "--seconds", "1", "--max-epochs", "1"])
    out = capsys.readouterr().out
    assert "fault-filtered test split (290 clips)" in out
    accuracy = float(out.split("test accuracy :")[1].split()[0])
    ckpt = Path(out.split("checkpoint    :")[1].split()[0])
    assert ckpt.is_file()
    metrics = yaml.safe_load((ckpt.parent / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-3)
    # The printed accuracy is the confusion matrix's: its trace over the 290 test clips.
    (table,) = (tmp_path / "qs").glob("lightning_logs/version_0/confusion_matrix.csv")
    counts = np.array([row.split(",")[1:] for row in table.read_text().splitlines()[1:]], dtype=int)
    assert counts.sum() == 290 and accuracy == pytest.approx(np.trace(counts) / 290, abs=1e-3)
    # Where the time went: the parts add up to the whole (each rounded to a second).
    wall, data, training, epochs, test = map(int, re.search(
        r"wall time +: (\d+) s \(data (\d+) s, training (\d+) s for (\d+) epochs, test (\d+) s\)", out).groups())
    assert epochs == 1 and abs(data + training + test - wall) <= 2


def test_ddp_on_two_cpu_processes_gives_the_single_process_metrics(tiny_config, tmp_path):
    """Real DDP (2 gloo processes launched by Lightning): training runs, and clip-level test
    metrics gathered across ranks equal a single-process evaluation of the same checkpoint
    (290 test clips split evenly, so the distributed sampler pads nothing)."""

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", *args, "--config", str(tiny_config),
                               "--trainer.limit_test_batches=1.0"],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def test_acc(stdout: str) -> float:
        line = next(line for line in stdout.splitlines() if "test/acc" in line)
        return float(line.split()[-1])

    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    cli("fit", *ddp)
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("best-epoch000.ckpt")
    distributed = test_acc(cli("test", *ddp, f"--ckpt_path={ckpt}"))
    single = test_acc(cli("test", "--trainer.devices=1", f"--ckpt_path={ckpt}"))
    assert distributed == pytest.approx(single, abs=1e-6)


def test_the_duplicates_threshold_default_is_the_librarys_constant(capsys, monkeypatch):
    """One value: ``musiczoo recommend --threshold`` defaults to ``DUPLICATE_THRESHOLD`` itself."""
    import zoo.recommend.library as library

    assert library.DUPLICATE_THRESHOLD == 0.95
    monkeypatch.setattr(library, "DUPLICATE_THRESHOLD", 0.93)  # a copy of the number would not follow
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    assert "(default: 0.93, the library's DUPLICATE_THRESHOLD)" in " ".join(capsys.readouterr().out.split())
