"""Shared fixtures: synthetic GTZAN trees in both real layouts (made once per session) and a tiny CLI config."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from datamodules.synthetic import make_synthetic_gtzan

# pytest-xdist runs the suite in one worker per core (pyproject's addopts): each worker, and every
# process a test starts (they inherit the environment), gets its share of the cores, because
# torch's threads spin and two workers at full width on the same cores run slower than one.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))

REPO = Path(__file__).resolve().parents[1]
#: Real files for development and CI (split lists, CC music clips, GTZAN excerpts), beside the
#: repository on every development machine and CI runner; never copied into the repository.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; a test that needs real files skips, naming the folder, without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the real files of {SHARED_DATA} (see docs/contributing.md), which is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gtzan_excerpts(shared_data, tmp_path_factory) -> Path:
    """The 409 real GTZAN excerpts as a dataset root: links to ``../shared/data/gtzan_excerpts``'s
    genre folders and to Sturm's artist index in ``splits/``, where ``musiczoo download gtzan
    --lists-only`` puts it (the shared folder itself is never written to)."""
    source = shared_data / "gtzan_excerpts"
    if not source.is_dir():
        pytest.skip(f"needs the real GTZAN excerpts of {source}, which are absent")
    root = tmp_path_factory.mktemp("gtzan_excerpts")
    for genre in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / genre.name).symlink_to(genre, target_is_directory=True)
    (root / "splits").mkdir()
    (root / "splits" / "GTZANindex.txt").symlink_to(shared_data / "gtzan" / "GTZANindex.txt")
    return root


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


# A real GTZAN config shrunk to seconds of CPU: one epoch of three batches. No callback block: the
# runs get the checkpoints users get (best-epochNNN.ckpt and last.ckpt in <default_root_dir>/checkpoints).
TINY_CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 2,
        "limit_test_batches": 2, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
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


@pytest.fixture()
def no_network(monkeypatch):
    """Any socket connection fails the test: the Hub and every host stay untouched."""
    def refuse(*args, **kwargs):
        raise OSError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# A tiny CRNN trained for two steps: what the publishing and loading tests publish and load.
TINY_SR = 16000
TINY_LABELS = ["blues", "jazz", "rock"]
TINY_CRNN = {"channels": [8, 16, 16, 16]}
TINY_PROVENANCE = {"dataset": "gtzan", "split": "fault_filtered", "synthetic": True}


class TinyData(L.LightningDataModule):
    """Random batches in the training batch contract; saves its hyperparameters like a data module
    run through LightningCLI (the path is a ``pathlib`` object, as jsonargparse gives it)."""

    def __init__(self, root: Path = Path("/data/synthetic_gtzan"), chunk_seconds: float = 1.0,
                 split: str = "fault_filtered"):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        audio = torch.randn(8, int(self.hparams.chunk_seconds * TINY_SR), generator=g)
        return DataLoader([{"audio": a, "target": torch.tensor(i % 3)} for i, a in enumerate(audio)], batch_size=4)


def train_tiny_crnn(folder: Path) -> Path:
    """Train the tiny CRNN for 2 steps with a real Trainer and save its checkpoint as ``folder/tiny.ckpt``."""
    from zoo.task import MusicTask

    L.seed_everything(0)
    # chunk_seconds and provenance are what the CLI links in from the data module.
    task = MusicTask(architecture="crnn", transform="mel", num_classes=3, sample_rate=TINY_SR, label_names=TINY_LABELS,
                     model_params=TINY_CRNN, chunk_seconds=1.0, provenance=TINY_PROVENANCE)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
    trainer.fit(task, datamodule=TinyData())
    ckpt = folder / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious(path: Path, marker: Path) -> Path:
    """A checkpoint whose unpickling would create ``marker`` (``tests/test_hub.py`` shows the payload is live)."""
    torch.save({"state_dict": {"net.head.weight": Payload(marker)}, "hyper_parameters": {"model": "crnn"}}, path)
    return path
