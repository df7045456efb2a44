"""``musiczoo bench GRID.yaml``: train and test every dataset x architecture x transform x seed.

A grid file names the datasets, architectures, transforms, seeds and trainer settings; it is
read and checked, before anything trains, by ``benchmarks/grid_file.py``.

Each cell runs in its own process through the same ``LightningCLI`` as ``musiczoo fit`` and
``musiczoo test`` (``benchmarks.cell``) and appends one JSON line to the results file: the
test metrics with everything needed to trust and repeat them (data provenance, parameters,
epochs, timings, throughput, hardware, versions, commit, config hash, checkpoint). So:

* a cell whose ``ok`` record exists with the same config hash is skipped, and a killed
  runner started again runs only what is missing;
* a failing cell gets a ``failed`` record with its error and the grid goes on (it is tried
  again on the next run, so a fixed data root or a larger GPU heals it);
* records are appended under a file lock, a cell being trained holds a lock on its folder,
  and a half-written last line is ignored, so two runners (or a SLURM array) can share one
  results file.

``--slurm FILE`` writes a SLURM job array (one task per missing cell, each multi-GPU or
multi-node through Lightning's own SLURM support); ``--submit`` also hands it to ``sbatch``.
``musiczoo leaderboard RESULTS...`` turns results into ``leaderboard.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.grid_file import Cell, Grid, GridError, load_grid
from benchmarks.records import append_record, read_records
from zoo.resume import PREEMPTED_STATUS

LOGGERS = {
    "csv": "lightning.pytorch.loggers.CSVLogger",
    "tensorboard": "lightning.pytorch.loggers.TensorBoardLogger",
    "wandb": "lightning.pytorch.loggers.WandbLogger",
}


#: Exit status of a cell whose folder is locked by another runner.
BUSY_STATUS = 75
#: Exit status of a cell that failed and wrote its own ``failed`` record.
RECORDED_FAILURE_STATUS = 3


def finished(grid: Grid) -> set[tuple]:
    """Keys of the cells with an ``ok`` record of the same config hash (a results file may also
    hold other records, e.g. the baseline of a grid's split)."""
    done = {(r["cell"], r["config_hash"]) for r in read_records(grid.results)
            if r.get("kind") == "bench" and r.get("status") == "ok"}
    return {c.key for c in grid.cells if (c.name, c.config_hash) in done}


def best_cell(grid: Grid, transform: str) -> tuple[Cell, str]:
    """The lowest-seed cell of ``transform``'s architecture with the best mean headline metric
    over its seeds (the latest ``ok`` record of each cell), and that record's checkpoint.

    A fixed seed rather than the best one, so that what is built on the pick (a published model,
    a recommendation library) is not chosen for its luck."""
    from benchmarks.leaderboard import HEADLINE_METRICS

    latest = {r["cell"]: r for r in read_records(grid.results) if r.get("kind") == "bench" and r.get("status") == "ok"}
    cells = [(c, latest[c.name]) for c in grid.cells if c.transform == transform and c.name in latest]
    if not cells:
        raise GridError(f"{grid.results}: no finished cell with transform {transform!r} (run the grid first)")
    metric = next(m for m in HEADLINE_METRICS if cells[0][1]["metrics"].get(m) is not None)
    scores: dict[str, list[float]] = {}
    for cell, record in cells:
        scores.setdefault(cell.architecture, []).append(record["metrics"][metric])
    best = max(scores, key=lambda a: sum(scores[a]) / len(scores[a]))
    cell, record = min(((c, r) for c, r in cells if c.architecture == best), key=lambda pair: pair[0].seed)
    return cell, record["checkpoint"]


# ---- running -------------------------------------------------------------------------------
def ensure_synthetic_data(cell: Cell) -> None:
    """Write a dataset's synthetic data the first time it is needed (``synth:`` in the grid)."""
    if cell.synth and not Path(cell.root).exists():
        command = [sys.executable, "-m", "zoo.cli", "synth", cell.synth[0], cell.root, *cell.synth[1:]]
        print(f"writing synthetic data: musiczoo synth {' '.join(command[4:])}", flush=True)
        subprocess.run(command, check=True)


def run_grid(grid: Grid, logger: str = "csv") -> dict[str, int]:
    """Run every missing cell in its own process; returns counts of ok / failed / skipped cells."""
    counts = {"ok": 0, "failed": 0, "skipped": 0, "busy": 0}
    done = finished(grid)
    started = time.perf_counter()
    for cell in grid.cells:
        tag = f"[{cell.index + 1}/{len(grid.cells)}] {cell.name}"
        if cell.key in done:
            counts["skipped"] += 1
            print(f"{tag}: done (same config hash) - skipped", flush=True)
            continue
        ensure_synthetic_data(cell)
        cell.folder.mkdir(parents=True, exist_ok=True)
        log_path = cell.folder / "cell.log"
        command = [sys.executable, "-m", "benchmarks.cell", str(grid.path), str(cell.index),
                   "--results", str(grid.results), "--out", str(grid.out), "--logger", logger]
        t0 = time.perf_counter()
        with open(log_path, "ab") as log:
            env = {**os.environ, "MUSICZOO_BENCH_LAUNCHED": repr(time.time())}
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        seconds = time.perf_counter() - t0
        if code == 0:
            counts["ok"] += 1
            print(f"{tag}: ok in {seconds:.0f} s", flush=True)
        elif code == PREEMPTED_STATUS:
            counts["failed"] += 1
            print(f"{tag}: stopped by SIGTERM after saving last.ckpt; resumes on the next run", flush=True)
        elif code == BUSY_STATUS:
            counts["busy"] += 1
            print(f"{tag}: being trained by another runner - skipped", flush=True)
        else:
            counts["failed"] += 1
            last = last_line(log_path)
            if code != RECORDED_FAILURE_STATUS:  # died without writing its record (killed, out of memory)
                append_record(grid.results, failed_record(grid, cell, f"exit status {code}: {last}"))
            print(f"{tag}: FAILED in {seconds:.0f} s: {last} (log: {log_path})", flush=True)
    counts["minutes"] = round((time.perf_counter() - started) / 60, 1)
    return counts


def last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def failed_record(grid: Grid, cell: Cell, error: str) -> dict:
    return {"kind": "bench", "status": "failed", "cell": cell.name, "grid": str(grid.path), "results": str(grid.results),
            "dataset_entry": cell.dataset, "architecture": cell.architecture, "transform": cell.transform,
            "seed": cell.seed, "init_from": cell.init_from, "freeze": cell.freeze,
            "config_hash": cell.config_hash, "error": error,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


# ---- SLURM -------------------------------------------------------------------------------
def slurm_script(grid: Grid, cells: list[Cell], logger: str = "csv") -> str:
    """A job array with one task per cell. Each task is ``num_nodes`` x ``devices`` SLURM tasks,
    which Lightning's SLURM environment turns into one DDP process per GPU; ``--signal`` gives
    Lightning 90 s to save a checkpoint and requeue the task when SLURM preempts it, and the
    requeued task resumes from that checkpoint in the cell's folder."""
    if not cells:
        raise GridError("no missing cells: every cell of the grid has a result")
    s = grid.slurm
    nodes = int(grid.trainer.get("num_nodes", 1))
    devices = grid.trainer.get("devices", 1)
    per_node = devices if isinstance(devices, int) else len(devices) if isinstance(devices, list) else 1
    gpus = s["gpus_per_node"] if s["gpus_per_node"] is not None else (
        per_node if grid.trainer.get("accelerator", "gpu") in ("gpu", "cuda", "auto") else 0)
    array = ",".join(str(c.index) for c in cells) + (f"%{s['max_parallel']}" if s["max_parallel"] else "")
    lines = ["#!/bin/bash", f"# {len(cells)} cells of {grid.path}; written by musiczoo bench --slurm",
             f"#SBATCH --job-name=musiczoo-{grid.path.stem}", f"#SBATCH --array={array}",
             f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={per_node}",
             f"#SBATCH --cpus-per-task={s['cpus_per_task']}", f"#SBATCH --time={s['time']}",
             f"#SBATCH --output={grid.out}/slurm/%A_%a.out", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue"]
    lines += [f"#SBATCH --gres=gpu:{gpus}"] if gpus else []
    lines += [f"#SBATCH --{k}={s[k]}" for k in ("partition", "account", "mem") if s[k]]
    command = ["srun", "python", "-m", "benchmarks.cell", str(grid.path), "$SLURM_ARRAY_TASK_ID",
               "--results", str(grid.results), "--out", str(grid.out), "--logger", logger]
    lines += ["set -euo pipefail", f"mkdir -p {shlex.quote(str(grid.out / 'slurm'))}",
              " ".join(shlex.quote(c) if not c.startswith("$") else f'"{c}"' for c in command), ""]
    return "\n".join(lines)


def submit(script: Path) -> str:
    if shutil.which("sbatch") is None:
        raise GridError(f"sbatch is not on PATH: submit {script} from a SLURM login node")
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise GridError(f"sbatch {script} failed: {done.stderr.strip()}")
    return done.stdout.strip()


# ---- the command ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="musiczoo bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path, help="grid file (see benchmarks/grids/)")
    parser.add_argument("--results", type=Path, help="JSON-lines results file (default: the grid's 'results')")
    parser.add_argument("--out", type=Path, help="folder of the cells' runs (default: the grid's 'out')")
    parser.add_argument("--logger", choices=sorted(LOGGERS), default="csv",
                        help="experiment tracking per cell (wandb: pip install -e '.[tracking]'; WANDB_MODE=offline works)")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done, then stop")
    parser.add_argument("--best", metavar="TRANSFORM", help="print the index and checkpoint of TRANSFORM's best cell "
                        "(the best architecture by mean test metric, its lowest seed), then stop")
    parser.add_argument("--slurm", type=Path, metavar="SCRIPT", help="write a SLURM job array of the missing cells")
    parser.add_argument("--submit", action="store_true", help="with --slurm: submit it with sbatch")
    args = parser.parse_args(argv)
    grid = load_grid(args.grid, args.results, args.out)
    done = finished(grid)
    if args.list:
        for cell in grid.cells:
            print(f"{cell.index:4d}  {'done   ' if cell.key in done else 'missing'}  {cell.name}  {cell.config_hash}")
        return
    if args.best:
        cell, checkpoint = best_cell(grid, args.best)
        print(cell.index, checkpoint)
        return
    if args.slurm:
        args.slurm.parent.mkdir(parents=True, exist_ok=True)
        args.slurm.write_text(slurm_script(grid, [c for c in grid.cells if c.key not in done], args.logger))
        print(f"wrote {args.slurm}")
        if args.submit:
            print(submit(args.slurm))
        return
    if args.submit:
        parser.error("--submit needs --slurm SCRIPT")
    print(f"{len(grid.cells)} cells ({len(done)} done) -> {grid.results}", flush=True)
    counts = run_grid(grid, args.logger)
    print(f"grid {grid.path}: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} already done, "
          f"{counts['busy']} busy elsewhere, in {counts['minutes']} min -> {grid.results}")
    print(f"leaderboard: musiczoo leaderboard {grid.results} --out leaderboard.md")
    if counts["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
