"""Kill, preempt and resume with real processes: `musiczoo fit ... --ckpt_path last`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS = 6, 3

SLOWDOWN = '''
import pathlib, time
from lightning.pytorch.callbacks import Callback


class SlowDown(Callback):
    """Appends each step it reaches to a file and sleeps, so the test can kill a run at a known step."""

    def __init__(self, marker: str, seconds: float = 0.4):
        self.marker, self.seconds = marker, seconds

    def on_train_batch_end(self, trainer, *args):
        with open(self.marker, "a") as f:
            f.write(f"{trainer.global_step}\\n")
        time.sleep(self.seconds)
'''


@pytest.fixture()
def run_config(tmp_path, gtzan_rerelease, tree_rate):
    """The tiny GTZAN run with the shipped checkpointing (no callback block): 3 epochs of 6 steps,
    ``last.ckpt`` every 2 steps. ``make(root, slow=True)`` writes a config that sleeps per step."""
    (tmp_path / "slowdown.py").write_text(SLOWDOWN)

    def make(root: Path, slow: bool = False, architecture: str = "crnn", seconds: float = 0.4) -> Path:
        cfg = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
        cfg["trainer"].update(default_root_dir=str(root), max_epochs=EPOCHS, limit_train_batches=STEPS_PER_EPOCH,
                              limit_val_batches=1, limit_test_batches=1)
        if slow:
            cfg["trainer"]["callbacks"] = [{"class_path": "slowdown.SlowDown",
                                          "init_args": {"marker": str(root / "steps"), "seconds": seconds}}]
        cfg["model"].update(architecture=architecture, checkpoint_every_n_steps=2)
        cfg["data"]["init_args"].update(root=str(gtzan_rerelease), sample_rate=tree_rate, cache_dir=str(tmp_path / "cache"))
        root.mkdir(parents=True, exist_ok=True)
        path = root.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


def env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def fit(config: Path, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(config), *extra], cwd=ROOT,
                          env=env(tmp_path), capture_output=True, text=True, timeout=300)


def start(config: Path, tmp_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo.cli", "fit", "--config", str(config)], cwd=ROOT,
                            env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(root: Path, step: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        steps = (root / "steps").read_text().split() if (root / "steps").is_file() else []
        if steps and int(steps[-1]) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never reached step {step}: {process.communicate()[1][-2000:]}")


def progress(checkpoint: Path) -> tuple[int, int]:
    """(optimizer steps, epoch) recorded in a checkpoint."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["epoch"]


def test_sigkill_mid_epoch_then_resume_ends_like_an_uninterrupted_run(run_config, tmp_path):
    uninterrupted = fit(run_config(tmp_path / "whole"), tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    # A finished run's last.ckpt is its end, not an earlier epoch.
    whole = progress(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    assert whole == (EPOCHS * STEPS_PER_EPOCH, EPOCHS - 1)

    root = tmp_path / "killed"
    run = start(run_config(root, slow=True), tmp_path)
    wait_for_step(root, STEPS_PER_EPOCH + 3, run)  # in the second epoch
    run.send_signal(signal.SIGKILL)
    run.wait()
    steps_saved, epoch_saved = progress(root / "checkpoints" / "last.ckpt")
    assert epoch_saved == 1 and STEPS_PER_EPOCH < steps_saved < 2 * STEPS_PER_EPOCH  # mid-epoch

    (root / "steps").rename(root / "steps_before_kill")
    run_config(root, slow=True, seconds=0.0)  # the same run, without the sleep
    resumed = fit(root.with_suffix(".yaml"), tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restoring states from the checkpoint path at" in resumed.stdout + resumed.stderr
    assert progress(root / "checkpoints" / "last.ckpt") == whole
    # The resumed run trained only what was missing: from the step after the checkpoint to the end.
    steps = [int(s) for s in (root / "steps").read_text().split()]
    assert steps == list(range(steps_saved + 1, EPOCHS * STEPS_PER_EPOCH + 1))


def test_sigterm_saves_a_checkpoint_and_fails_the_job_then_the_requeued_run_resumes(run_config, tmp_path):
    root = tmp_path / "preempted"
    run = start(run_config(root, slow=True), tmp_path)
    wait_for_step(root, 3, run)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == ("musiczoo fit: stopped by SIGTERM after saving last.ckpt; "
                                               "run the same command with --ckpt_path last to resume")
    steps_saved, _ = progress(root / "checkpoints" / "last.ckpt")
    assert 3 <= steps_saved < STEPS_PER_EPOCH  # where SIGTERM arrived, in the first epoch
    assert f"SIGTERM: saved {root / 'checkpoints' / 'last.ckpt'} at step {steps_saved}" in stdout
    resumed = fit(root.with_suffix(".yaml"), tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert progress(root / "checkpoints" / "last.ckpt") == (EPOCHS * STEPS_PER_EPOCH, EPOCHS - 1)


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(run_config, tmp_path):
    root = tmp_path / "fresh"
    done = fit(run_config(root), tmp_path, "--ckpt_path", "last")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"musiczoo fit: error: --ckpt_path last: no checkpoint to resume in {root / 'checkpoints'}")
    assert not list(root.rglob("*.ckpt"))
    missing = fit(run_config(root), tmp_path, "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert missing.returncode == 2 and "nope.ckpt: no such checkpoint" in missing.stderr


def test_resume_from_another_architecture_names_both(run_config, tmp_path):
    root = tmp_path / "crnn"
    config = run_config(root)
    assert fit(config, tmp_path, "--trainer.max_epochs=1").returncode == 0
    done = fit(config, tmp_path, "--ckpt_path", "last", "--model.architecture=fcn", "--model.transform=mfcc")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line == (f"musiczoo fit: error: cannot resume from {root / 'checkpoints' / 'last.ckpt'}: it was trained "
                    "with architecture 'crnn', transform 'mel'; this run has architecture 'fcn', transform 'mfcc'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_more_devices_than_the_machine_has_is_lightnings_message_not_a_hang(run_config, tmp_path):
    done = fit(run_config(tmp_path / "gpu"), tmp_path, "--trainer.accelerator=gpu", "--trainer.devices=4")
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("musiczoo fit: error: ") and "gpu" in line.lower()
