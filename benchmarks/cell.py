"""One cell of a benchmark grid, in its own process: ``musiczoo fit`` then ``musiczoo test``.

The cell builds the same ``LightningCLI`` as the ``musiczoo`` command from the grid's
arguments, trains, tests the best checkpoint and appends one record to the results file
(on the global-zero process only, so a multi-GPU or multi-node cell writes once). A cell
that fails writes a ``failed`` record with the error and exits with status 3; a cell whose
folder is locked by another runner exits with status 75 without doing anything; a cell
stopped by SIGTERM (preempted) saves ``last.ckpt``, exits with status 143 and resumes from it
when it runs again (a SLURM requeue, or the runner's next pass).

    python -m benchmarks.cell GRID.yaml INDEX --results FILE --out DIR [--logger csv|tensorboard|wandb]
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from benchmarks.grid import (BUSY_STATUS, LOGGERS, RECORDED_FAILURE_STATUS, Cell, Grid, failed_record,
                             load_grid)
from benchmarks.records import append_record
from zoo.cli.common import quiet_lightning, verbose_by_env
from zoo.resume import PREEMPTED_STATUS


class TrainingThroughput(Callback):
    """Training samples per second: the time from each training epoch's start to its last
    batch (data loading included, validation excluded), summed over epochs."""

    def __init__(self):
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = self._last_batch = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start = self._last_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch["target"]) * trainer.world_size
        self._last_batch = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # A run resumed from a checkpoint written at an epoch's end starts in this hook, with no
        # epoch of its own begun: there is nothing to count.
        if self._epoch_start is not None:
            self.seconds += self._last_batch - self._epoch_start
        self._epoch_start = self._last_batch = None

    @property
    def samples_per_second(self) -> float | None:
        return round(self.samples / self.seconds, 1) if self.seconds > 0 else None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def hardware(trainer) -> str:
    """What the cell ran on, e.g. ``4 x NVIDIA H100 80GB HBM3 (1 node)`` or ``CPU: Intel(R) Xeon(R) ... (2 cores)``."""
    import torch

    if trainer.accelerator.__class__.__name__ == "CUDAAccelerator":
        return f"{trainer.world_size} x {torch.cuda.get_device_name(0)} ({trainer.num_nodes} node(s))"
    return f"CPU: {cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def logger_args(grid: Grid, cell: Cell, logger: str) -> list[str]:
    args = [f"--trainer.logger.class_path={LOGGERS[logger]}", f"--trainer.logger.init_args.save_dir={cell.folder}"]
    if logger == "wandb":
        args += [f"--trainer.logger.init_args.project={grid.wandb_project}",
                 f"--trainer.logger.init_args.name={cell.name}", f"--trainer.logger.init_args.group={grid.path.stem}",
                 f"--trainer.logger.init_args.job_type={cell.dataset}"]
    return args


def finite(value) -> float | None:
    value = float(value)
    return round(value, 5) if math.isfinite(value) else None


def run(grid: Grid, cell: Cell, logger: str, launched: float | None) -> dict:
    """fit + test one cell; returns its record."""
    from zoo.cli.train import build_cli
    from zoo.hub import git_commit, package_versions
    from zoo.resume import check_resume, last_checkpoint

    t0 = time.time()
    args = [*cell.args, f"--trainer.default_root_dir={cell.folder}", *logger_args(grid, cell, logger)]
    cli = build_cli(args, run=False)
    trainer, task, data = cli.trainer, cli.model, cli.datamodule
    throughput = TrainingThroughput()
    trainer.callbacks.append(throughput)
    if trainer.logger is not None:
        trainer.logger.log_hyperparams({"bench": {"cell": cell.name, "grid": str(grid.path),
                                                  "config_hash": cell.config_hash, "seed": cell.seed}})
    # A cell killed or preempted earlier (same config hash, so the same folder) resumes from its last.ckpt.
    resume = check_resume("last", trainer, task.spec) if last_checkpoint(trainer).is_file() else None
    t_fit = time.time()
    # Checkpoints this cell wrote: tensors and plain data, so loaded weights-only.
    trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    fit_s = time.time() - t_fit
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    t_test = time.time()
    (metrics,) = trainer.test(task, datamodule=data, ckpt_path=best or None, weights_only=True)
    test_s = time.time() - t_test
    wall_s = time.time() - (launched or t0)
    record = {
        "kind": "bench", "status": "ok", "cell": cell.name, "grid": str(grid.path), "results": str(grid.results),
        "dataset_entry": cell.dataset, **data.provenance, "root": cell.root, "title": cell.title,
        "architecture": cell.architecture, "transform": cell.transform, "seed": cell.seed,
        "init_from": cell.init_from, "freeze": cell.freeze,
        "metrics": {k: finite(v) for k, v in metrics.items()},
        "params": sum(p.numel() for p in task.net.parameters()),
        "epochs": trainer.current_epoch, "steps": trainer.global_step,
        "train_samples_per_s": throughput.samples_per_second,
        "seconds": {"wall": round(wall_s, 1), "startup": round(t0 - launched, 1) if launched else None,
                    "setup": round(t_fit - t0, 1), "fit": round(fit_s, 1),
                    "train": round(throughput.seconds, 1), "test": round(test_s, 1)},
        "hardware": hardware(trainer), "precision": str(trainer.precision), "devices": trainer.world_size,
        "versions": package_versions(), "commit": git_commit(), "config_hash": cell.config_hash,
        "checkpoint": best, "resumed_from": resume, "command": "musiczoo fit " + shlex.join(args[: len(cell.args) + 1]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if trainer.logger is not None:
        trainer.logger.log_metrics({"bench/wall_s": wall_s, "bench/train_samples_per_s": throughput.samples_per_second or 0.0})
        trainer.logger.save()
    return record if trainer.is_global_zero else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cell", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path)
    parser.add_argument("index", type=int)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--logger", choices=sorted(LOGGERS), default="csv")
    args = parser.parse_args(argv)
    if not verbose_by_env():
        quiet_lightning()  # cell.log reads like a `musiczoo fit` run; MUSICZOO_VERBOSE=1 keeps everything
    launched = float(os.environ["MUSICZOO_BENCH_LAUNCHED"]) if "MUSICZOO_BENCH_LAUNCHED" in os.environ else None
    grid = load_grid(args.grid, args.results, args.out)
    if not 0 <= args.index < len(grid.cells):
        raise SystemExit(f"cell {args.index} does not exist: {args.grid} has cells 0..{len(grid.cells) - 1}")
    cell = grid.cells[args.index]
    cell.folder.mkdir(parents=True, exist_ok=True)
    lock = open(cell.folder / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{cell.name}: another process is training this cell", file=sys.stderr)
        sys.exit(BUSY_STATUS)
    rank = int(os.environ.get("SLURM_PROCID", os.environ.get("RANK", "0")))
    try:
        record = run(grid, cell, args.logger, launched)
    except SIGTERMException:  # preempted: last.ckpt is saved, the next run of this cell resumes from it
        print(f"{cell.name}: stopped by SIGTERM after saving last.ckpt; the cell resumes when run again", file=sys.stderr)
        sys.exit(PREEMPTED_STATUS)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure becomes the cell's record; the grid goes on
        import traceback

        traceback.print_exc()
        if isinstance(e, SystemExit):  # the CLI's parser refused an argument and printed why
            e = ValueError(f"the CLI refused the cell's arguments (exit status {e.code}); see {cell.folder / 'cell.log'}")
        cause = e
        while cause.__cause__ is not None:  # jsonargparse wraps a data module's own error
            cause = cause.__cause__
        message = (str(cause).strip().splitlines() or [""])[0]
        if rank == 0:
            append_record(grid.results, failed_record(grid, cell, f"{type(cause).__name__}: {message}"))
        sys.exit(RECORDED_FAILURE_STATUS)
    if record:
        append_record(grid.results, record)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in record["metrics"].items() if v is not None and "loss" not in k)
        print(f"{cell.name}: {shown} ({record['seconds']['wall']:.0f} s)")


if __name__ == "__main__":
    main()
