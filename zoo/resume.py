"""Checkpoints while training, so a killed or preempted run resumes where it stopped.

One folder per run: ``<default_root_dir>/checkpoints``, not the logger's ``version_N``
folder, so running the same ``musiczoo fit`` again with ``--ckpt_path last`` finds the
checkpoint of the run before it. In it:

* ``best-epochNNN.ckpt``: the best by the task's validation metric;
* ``last.ckpt``: written every ``every_n_steps`` optimizer steps and at every epoch's end,
  so a SIGKILL loses at most that many steps and a finished run's ``last.ckpt`` is its end;
* on SIGTERM (how SLURM and most schedulers preempt), ``last.ckpt`` is written at the
  current step before Lightning stops; the command then exits with status 143
  (128 + SIGTERM), so the job is not reported as a success.

:func:`check_resume` runs before ``fit``: a resume that finds no checkpoint, or one trained
with another architecture, transform, class count or sample rate, is an error rather than
a fresh start or a shape error deep in ``load_state_dict``.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

#: Exit status of a run stopped by SIGTERM after saving its checkpoint (128 + signal 15).
PREEMPTED_STATUS = 143
#: Hyperparameters a resumed run must share with its checkpoint.
RESUME_MUST_MATCH = ("architecture", "transform", "num_classes", "sample_rate")


def checkpoint_dir(trainer) -> Path:
    return Path(trainer.default_root_dir) / "checkpoints"


def last_checkpoint(trainer) -> Path:
    """Where :class:`LastCheckpoint` writes and ``--ckpt_path last`` looks."""
    return checkpoint_dir(trainer) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"


class LastCheckpoint(Callback):
    """``last.ckpt``: every ``every_n_steps`` optimizer steps, at the end of every training epoch,
    and when Lightning stops on SIGTERM (it raises ``SIGTERMException`` at the next batch
    boundary, on every rank), so a killed run loses at most ``every_n_steps`` steps and a
    preempted one none. Lightning's ``--ckpt_path last`` finds it next to the best checkpoint."""

    def __init__(self, path: Path, every_n_steps: int):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"checkpoint_every_n_steps must be >= 1, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.global_step == self._saved_step:
            return
        # The full state (optimizer, schedule, loops, callbacks), which a resume needs, said explicitly.
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self._save(trainer)  # unless this very step was just saved
            rank_zero_info(f"SIGTERM: saved {self.path} at step {trainer.global_step}; "
                           "run the same command with --ckpt_path last to resume")


def best_checkpoint(trainer, monitor: str) -> ModelCheckpoint:
    """``best-epochNNN.ckpt`` by ``monitor`` (higher is better), in :func:`checkpoint_dir`."""
    return ModelCheckpoint(dirpath=checkpoint_dir(trainer), monitor=monitor, mode="max",
                           filename="best-epoch{epoch:03d}", auto_insert_metric_name=False)


def check_resume(ckpt_path: str | None, trainer, spec) -> str | None:
    """The checkpoint ``fit`` resumes from (``last`` resolved to its file), after checking that it
    exists and that it was trained as this run's model (``spec``, the model's ``ModelSpec``);
    ``None`` for a fresh start."""
    from .checkpoint import checkpoint_spec, load_checkpoint_dict

    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        path = last_checkpoint(trainer)
        if not path.is_file():
            raise FileNotFoundError(
                f"--ckpt_path last: no checkpoint to resume in {path.parent} (no earlier run of this "
                "--trainer.default_root_dir saved one); start without --ckpt_path, or pass a checkpoint file")
    elif ckpt_path in ("best", "hpc"):
        return ckpt_path  # Lightning resolves and checks these itself
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint")
    recorded, ours = checkpoint_spec(load_checkpoint_dict(path), path).to_config(), spec.to_config()
    different = [k for k in RESUME_MUST_MATCH if recorded.get(k) != ours.get(k)]
    if different:
        theirs = ", ".join(f"{k} {recorded.get(k)!r}" for k in different)
        raise ValueError(f"cannot resume from {path}: it was trained with {theirs}; this run has "
                         + ", ".join(f"{k} {ours.get(k)!r}" for k in different))
    return str(path)
