"""Folders and checkpoints in the formats musiczoo wrote before ``ModelSpec`` (2026-11) still load.

Both are written here literally, key by key as the earlier writers wrote them, rather than by
today's writers, so a change to today's format cannot hide a reader that stopped understanding
the earlier one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from zoo.factory import create_model, from_pretrained

SR = 8000
LABELS = ["blues", "jazz", "rock"]
MEL = {"n_fft": 256, "hop_length": 128, "f_min": 0.0, "f_max": 4000.0, "top_db": 80.0, "pad_mode": "constant", "n_mels": 32}
CRNN = {"channels": [8, 8, 8, 8]}


def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = create_model("crnn", transform="mel", num_classes=3, sample_rate=SR, transform_params=MEL, **CRNN)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def test_a_published_folder_of_config_version_2_loads(tmp_path):
    folder = tmp_path / "published"
    folder.mkdir()
    state = weights()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "musiczoo_config_version": 2, "architecture": "crnn", "model_params": CRNN, "num_classes": 3,
        "transform": "mel", "transform_params": MEL, "sample_rate": SR, "chunk_seconds": 1.5, "task": "multiclass",
        "label_names": LABELS, "dataset": "gtzan", "split": "fault_filtered", "synthetic": True,
        "metrics": {"test/acc": 0.5}, "num_parameters": sum(v.numel() for v in state.values()),
        "versions": {"musiczoo": "0.1.0", "torch": "2.9.1", "torchaudio": "2.9.1", "lightning": "2.6.6", "timm": "1.0.31"},
        "git_commit": "06ac194",
    }, indent=2))
    (folder / "README.md").write_text("card\n")
    model = from_pretrained(folder)
    spec = model.spec
    assert (spec.architecture, spec.transform, spec.sample_rate, spec.chunk_seconds) == ("crnn", "mel", SR, 1.5)
    assert spec.transform_params == MEL and spec.model_params == CRNN and spec.label_names == tuple(LABELS)
    assert (spec.provenance.dataset, spec.provenance.split, spec.provenance.synthetic) == ("gtzan", "fault_filtered", True)
    assert spec.provenance.metrics == {"test/acc": 0.5}
    torch.testing.assert_close(model.state_dict(), state)


def test_a_lightning_checkpoint_of_the_musictask_before_the_spec_loads(tmp_path):
    """The task's hyperparameters, a Lightning checkpoint's keys, and LightningCLI's ``pathlib`` root."""
    state = weights()
    hyper_parameters = {
        "architecture": "crnn", "transform": "mel", "num_classes": 3, "task": "multiclass", "sample_rate": SR,
        "chunk_seconds": 1.5, "label_names": LABELS,
        "provenance": {"dataset": "gtzan", "split": "fault_filtered", "synthetic": True},
        "transform_params": {"n_fft": 256, "hop_length": 128, "n_mels": 32}, "model_params": CRNN, "lr": 1e-3,
        "weight_decay": 1e-2, "warmup_ratio": 0.05, "spec_augment": False, "freq_mask": 16, "time_mask": 32,
        "num_masks": 2, "label_smoothing": 0.0, "checkpoint_every_n_steps": 500,
    }
    path = tmp_path / "best-epoch000.ckpt"
    torch.save({
        "epoch": 0, "global_step": 2, "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"net.{k}": v for k, v in state.items()}, "loops": {}, "callbacks": {},
        "optimizer_states": [], "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hyper_parameters,
        "datamodule_hparams_name": "kwargs",
        "datamodule_hyper_parameters": {"root": Path("/data/gtzan"), "split": "fault_filtered", "chunk_seconds": 1.5},
    }, path)
    model = from_pretrained(path)  # one loader for every kind of model argument
    spec = model.spec
    assert (spec.architecture, spec.chunk_seconds, spec.label_names) == ("crnn", 1.5, tuple(LABELS))
    assert spec.transform_params == MEL  # the front-end's defaults completed from the recorded settings
    assert (spec.provenance.dataset, spec.provenance.synthetic) == ("gtzan", True) and not model.training
    torch.testing.assert_close(model.state_dict(), state)
