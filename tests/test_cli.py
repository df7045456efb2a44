"""The real ``musiczoo`` command: fit/test through LightningCLI, extra verbs, name errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from zoo.cli import config_path, main

TINY = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 2,
        "limit_test_batches": 2, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                       "init_args": {"monitor": "val/acc", "mode": "max", "filename": "best",
                                     "auto_insert_metric_name": False}}],
    },
    "model": {"model": "crnn", "transform": "mel", "transform_params": {"n_fft": 256, "hop_length": 128, "n_mels": 48}},
    "data": {"class_path": "datamodules.gtzan.GTZANDataModule",
             "init_args": {"split": "fault_filtered", "clip_seconds": 0.5, "batch_size": 8}},
}


@pytest.fixture()
def tiny_config(tmp_path, gtzan_rerelease, tree_rate) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "run")
    cfg["data"]["init_args"].update(root=str(gtzan_rerelease), sample_rate=tree_rate, cache_dir=str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fit_then_test_through_the_cli(tiny_config, tmp_path, capsys):
    main(["fit", "--config", str(tiny_config)])
    ckpt = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    hparams = saved["hyper_parameters"]
    # The data module's settings travel with the checkpoint, including that the data was synthetic.
    data_hparams = saved["datamodule_hyper_parameters"]
    assert data_hparams["split"] == "fault_filtered" and data_hparams["clip_seconds"] == 0.5
    assert data_hparams["synthetic"] is True
    # Linked from the data module: GTZAN's 10 genres, its sample rate, the task type.
    assert hparams["num_classes"] == 10 and hparams["task"] == "multiclass" and hparams["sample_rate"] == 8000
    assert hparams["label_names"][:3] == ["blues", "classical", "country"]
    main(["test", "--config", str(tiny_config), "--ckpt_path", str(ckpt)])
    out = capsys.readouterr().out
    assert "test/acc" in out and "test/f1_macro" in out
    assert list((tmp_path / "run" / "lightning_logs").glob("version_*/confusion_matrix.csv"))


@pytest.mark.parametrize("flag,message", [
    ("--model.model=resnet_lstm", "unknown model 'resnet_lstm'; valid models: crnn, fcn, resnet_gru"),
    ("--model.transform=cqt", "unknown transform 'cqt'; valid transforms: mel, mfcc, stft"),
])
def test_wrong_names_get_one_line(tiny_config, flag, message):
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(tiny_config), flag],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"musiczoo: error: {message}")
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


def test_every_shipped_config_names_a_real_model_and_transform():
    for path in sorted(config_path("quickstart.yaml").parent.glob("*.yaml")):
        model = yaml.safe_load(path.read_text())["model"]
        from zoo.registry import create_model

        create_model(model.get("model", "resnet_gru"), transform=model.get("transform", "mel"),
                     transform_params=model.get("transform_params"), **(model.get("model_params") or {}))


def test_quickstart_runs_end_to_end_and_records_its_metrics(tmp_path, capsys):
    """The README's first command, shortened: 1-second clips, one epoch."""
    main(["quickstart", "--out", str(tmp_path / "qs"), "--seconds", "1", "--max-epochs", "1"])
    out = capsys.readouterr().out
    assert "fault-filtered test split (290 clips)" in out
    accuracy = float(out.split("test accuracy :")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0
    ckpt = Path(out.split("checkpoint    :")[1].split()[0])
    assert ckpt.is_file()
    metrics = yaml.safe_load((ckpt.parent / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-3)


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
    (ckpt,) = (tmp_path / "run").glob("lightning_logs/version_0/checkpoints/best.ckpt")
    distributed = test_acc(cli("test", *ddp, f"--ckpt_path={ckpt}"))
    single = test_acc(cli("test", "--trainer.devices=1", f"--ckpt_path={ckpt}"))
    assert distributed == pytest.approx(single, abs=1e-6)
