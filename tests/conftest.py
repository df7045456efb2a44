"""Shared fixtures: synthetic GTZAN trees in both real layouts (made once per session) and a tiny CLI config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datamodules.synthetic import make_synthetic_gtzan

# Short, low-rate clips: the layout and the names are what these trees are for.
TREE_SECONDS, TREE_RATE = 1.0, 8000


@pytest.fixture(scope="session")
def tree_rate() -> int:
    """Sample rate of the GTZAN trees below."""
    return TREE_RATE


@pytest.fixture(scope="session")
def gtzan_rerelease(tmp_path_factory) -> Path:
    """``genres_original/<g>/<g>.000NN.wav``, 100 per genre, with the re-release's empty
    ``jazz.00054.wav``. Returns the dataset root (the folder above ``genres_original``)."""
    root = tmp_path_factory.mktemp("gtzan_rerelease")
    data = make_synthetic_gtzan(root, seconds=TREE_SECONDS, sample_rate=TREE_RATE, layout="genres_original")
    (data / "jazz" / "jazz.00054.wav").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def gtzan_original(tmp_path_factory) -> Path:
    """``genres/<g>/<g>.000NN.au``, 100 per genre, as in the original tarball."""
    root = tmp_path_factory.mktemp("gtzan_original")
    make_synthetic_gtzan(root, seconds=TREE_SECONDS, sample_rate=TREE_RATE, layout="genres")
    return root


# A real GTZAN config shrunk to seconds of CPU: one epoch of three batches.
TINY_CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 2,
        "limit_test_batches": 2, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                       "init_args": {"monitor": "val/acc", "mode": "max", "filename": "best",
                                     "auto_insert_metric_name": False}}],
    },
    "model": {"architecture": "crnn", "transform": "mel", "transform_params": {"n_fft": 256, "hop_length": 128, "n_mels": 48}},
    "data": {"class_path": "datamodules.gtzan.GTZANDataModule",
             "init_args": {"split": "fault_filtered", "chunk_seconds": 0.5, "batch_size": 8}},
}


@pytest.fixture()
def tiny_config(tmp_path, gtzan_rerelease, tree_rate) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "run")
    cfg["data"]["init_args"].update(root=str(gtzan_rerelease), sample_rate=tree_rate, cache_dir=str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
