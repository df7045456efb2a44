"""``musiczoo bench``: a grid of cells, each its own process through the CLI, resumable and safe to share."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.grid import GridError, load_grid, main as bench
from benchmarks.records import append_record, read_records
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write_grid(tmp_path, tiny_config, **changes) -> Path:
    """A 2 architectures x 2 transforms x 2 seeds grid on the tiny synthetic GTZAN of the tests."""
    grid = {
        "results": str(tmp_path / "results.jsonl"),
        "out": str(tmp_path / "cells"),
        "architectures": ["fcn", "crnn"],
        "transforms": ["mel", "mfcc"],
        "seeds": [0, 1],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "limit_test_batches": 1},
        "datasets": {"tiny_gtzan": {"config": str(tiny_config),
                                    "root": yaml.safe_load(tiny_config.read_text())["data"]["init_args"]["root"]}},
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def ok_records(results: Path) -> list[dict]:
    return [r for r in read_records(results) if r["status"] == "ok"]


def test_a_2x2x2_grid_runs_every_cell_through_the_cli_and_resumes_after_a_killed_runner(tiny_config, tmp_path):
    grid = write_grid(tmp_path, tiny_config)
    results = tmp_path / "results.jsonl"
    # The runner is killed (with its cell) while the third cell trains.
    runner = subprocess.Popen([sys.executable, "-m", "zoo.cli", "bench", str(grid)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 400
    while len(ok_records(results)) < 2 and time.time() < deadline and runner.poll() is None:
        time.sleep(0.5)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    before = ok_records(results)
    assert 2 <= len(before) < 8
    with open(results, "a") as f:  # and a record was cut short when it died
        f.write('{"kind": "bench", "status": "ok", "cell": "tiny_gtzan/crnn-mfcc-se')

    done = subprocess.run([sys.executable, "-m", "zoo.cli", "bench", str(grid)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("skipped") == len(before)
    records = ok_records(results)
    cells = [r["cell"] for r in records]
    assert len(cells) == len(set(cells)) == 8  # every cell once: none repeated, none lost
    assert {(r["architecture"], r["transform"], r["seed"]) for r in records} == {
        (a, t, s) for a in ("fcn", "crnn") for t in ("mel", "mfcc") for s in (0, 1)}
    for r in records:
        assert (r["dataset"], r["split"], r["synthetic"]) == ("gtzan", "fault_filtered", True)
        # The recorded accuracy is the cell's own test confusion matrix read back: all 290 fault-filtered test clips.
        (table,) = Path(r["checkpoint"]).parents[1].rglob("confusion_matrix.csv")
        counts = np.array([row.split(",")[1:] for row in table.read_text().splitlines()[1:]], dtype=int)
        assert counts.sum() == 290 and r["metrics"]["test/acc"] == pytest.approx(np.trace(counts) / 290, abs=5e-5)  # records keep 4 decimals
        assert "test/f1_macro" in r["metrics"]
        assert r["params"] > 0 and r["epochs"] == 1 and r["steps"] == 2
        assert r["train_samples_per_s"] > 0 and r["seconds"]["wall"] >= r["seconds"]["fit"] > 0
        assert r["seconds"]["startup"] > 0
        assert Path(r["checkpoint"]).is_file() and r["checkpoint"].startswith(str(tmp_path / "cells"))
        assert r["versions"]["torch"] and r["hardware"].startswith("CPU") and len(r["config_hash"]) == 16
        assert r["command"].startswith("musiczoo fit --config")
    # Seeds differ, so the same architecture x transform trained twice gives different weights.
    by_seed = {r["seed"]: r["metrics"]["test/loss"] for r in records if (r["architecture"], r["transform"]) == ("fcn", "mel")}
    assert by_seed[0] != by_seed[1]
    assert "ignored 1 incomplete line" in done.stderr


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(tiny_config, tmp_path):
    grid = write_grid(tmp_path, tiny_config, architectures=["fcn"], transforms=["mel"], seeds=[0])
    spec = yaml.safe_load(grid.read_text())
    spec["datasets"]["missing"] = {"config": str(tiny_config), "root": str(tmp_path / "no_such_gtzan")}
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SystemExit) as exit_:
        bench([str(grid)])
    assert exit_.value.code == 1  # a grid with a failed cell ends with a failing status
    records = read_records(tmp_path / "results.jsonl")
    assert [(r["dataset_entry"], r["status"]) for r in records] == [("tiny_gtzan", "ok"), ("missing", "failed")]
    assert "no_such_gtzan" in records[1]["error"]
    # A rerun skips the finished cell and tries the failed one again.
    with pytest.raises(SystemExit):
        bench([str(grid)])
    assert [r["status"] for r in read_records(tmp_path / "results.jsonl")] == ["ok", "failed", "failed"]


def test_a_changed_config_is_a_new_cell(tiny_config, tmp_path):
    grid = write_grid(tmp_path, tiny_config)
    hashes = [c.config_hash for c in load_grid(grid).cells]
    assert len(set(hashes)) == 8
    spec = yaml.safe_load(grid.read_text())
    spec["trainer"]["max_epochs"] = 2
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert not set(hashes) & {c.config_hash for c in load_grid(grid).cells}


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["fcn", "resnet_grux"]}, "'resnet_grux' matches no registered model; registered: crnn, fcn"),
    ({"architectures": ["timm/no_such_net"]}, "no timm model matches"),
    ({"transforms": ["mel", "wavelet"]}, "unknown transform(s) ['wavelet']; valid: chroma, cqt, mel, mfcc, stft"),
    ({"datasets": {"gtzan": {"config": "benchmarks/configs/nope.yaml", "root": "x"}}}, "nope.yaml does not exist"),
    ({"datasets": {"gtzan": {"root": "x"}}}, "needs 'config'"),
    ({"epochs": 3}, "unknown keys ['epochs']"),
])
def test_a_bad_grid_is_refused_before_anything_trains(tiny_config, tmp_path, change, message):
    grid = write_grid(tmp_path, tiny_config, **change)
    with pytest.raises(GridError) as error:
        bench([str(grid)])
    assert message in str(error.value)
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "cells").exists()


@pytest.mark.parametrize("change, message", [
    ({"datasets": ["tiny_gtzan"]}, "'datasets' must be a mapping of dataset names to {config, root, ...}, not ['tiny_gtzan']"),
    ({"architectures": 5}, "'architectures' must be a list of names or patterns, not 5"),
    ({"transforms": "mel"}, "'transforms' must be a list of names or {name: transform_params}, not 'mel'"),
    ({"transforms": {"mel": 512}}, "'transforms.mel' must be a mapping of front-end settings, not 512"),
    ({"seeds": ["abc"]}, "'seeds' must be a list of integers, not 'abc'"),
    ({"seeds": [True]}, "'seeds' must be a list of integers, not True"),
    ({"trainer": {"max_epochz": 1}}, "trainer.max_epochz is not an argument of lightning.Trainer; did you mean 'max_epochs'?"),
    ({"overrides": {"trainer.limit_train_batchez": 2}},
     "trainer.limit_train_batchez is not an argument of lightning.Trainer; did you mean 'limit_train_batches'?"),
    ({"overrides": {"model.lrr": 0.1}}, "model.lrr is not an argument of MusicTask; did you mean 'lr'?"),
    ({"trainer": 3}, "'trainer' must be a mapping of lightning.Trainer arguments, not 3"),
])
def test_a_mistyped_grid_is_one_line_naming_the_file_and_the_key(tiny_config, tmp_path, capsys, change, message):
    grid = write_grid(tmp_path, tiny_config, **change)
    with pytest.raises(SystemExit) as e:
        main(["bench", str(grid)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().splitlines() == [f"musiczoo bench: error: {grid}: {message}"]
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "cells").exists()


def test_a_typo_in_a_datasets_overrides_names_the_dataset(tiny_config, tmp_path):
    grid = write_grid(tmp_path, tiny_config)
    spec = yaml.safe_load(grid.read_text())
    spec["datasets"]["tiny_gtzan"]["overrides"] = {"data.init_args.batch_sise": 4}
    grid.write_text(yaml.safe_dump(spec))
    with pytest.raises(GridError) as error:
        load_grid(grid)
    assert str(error.value) == (f"{grid}: datasets.tiny_gtzan.overrides.data.init_args.batch_sise is not an argument "
                                "of GTZANDataModule; did you mean 'batch_size'?")


def test_broken_yaml_names_the_file_and_the_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("architectures: [fcn, crnn\ntransforms: [mel]\n")
    with pytest.raises(SystemExit) as e:
        main(["bench", str(grid)])
    assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"musiczoo bench: error: {grid}: invalid YAML at line 2, column 11: expected ',' or ']', but got ':'"]
    grid.write_bytes(bytes(range(256)))
    with pytest.raises(GridError, match=f"^{grid}: not a text file"):
        load_grid(grid)


def test_an_unknown_data_class_names_the_valid_ones(tiny_config, tmp_path):
    config = tmp_path / "odd.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "datamodules.gtzan.NoSuchData"}}))
    grid = write_grid(tmp_path, tiny_config, datasets={"odd": {"config": str(config), "root": "x"}})
    with pytest.raises(GridError, match="not a data module of this toolkit; known: datamodules.gtzan.GTZANDataModule"):
        load_grid(grid)


def test_glob_patterns_and_timm_names_expand_over_the_registry(tiny_config, tmp_path):
    grid = load_grid(write_grid(tmp_path, tiny_config, architectures=["short_chunk_*", "timm/resnet18", "fcn", "*"],
                                seeds=[0], transforms=["mel"]))
    names = [c.architecture for c in grid.cells]
    assert names[:4] == ["short_chunk_cnn", "short_chunk_resnet", "timm/resnet18", "fcn"]
    assert sorted(names) == sorted({*names}) and {"resnet_gru", "resnet_vit", "crnn"} <= set(names)


def test_records_survive_concurrent_writers_and_a_cut_line(tmp_path):
    results = tmp_path / "r.jsonl"
    script = ("import sys; from benchmarks.records import append_record\n"
              "for i in range(200): append_record(sys.argv[1], {'writer': sys.argv[2], 'i': i, 'pad': 'x' * 5000})")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(results), str(w)], cwd=ROOT) for w in range(3)]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    records = read_records(results)
    assert len(records) == 600 and {(r["writer"], r["i"]) for r in records} == {(str(w), i) for w in range(3) for i in range(200)}
    with open(results, "a") as f:
        f.write('{"writer": "killed", "i"')
    append_record(results, {"writer": "after", "i": 0})
    assert [r["writer"] for r in read_records(results)][-1] == "after" and len(read_records(results)) == 601


def test_slurm_array_script_for_the_missing_cells(tiny_config, tmp_path):
    grid = write_grid(tmp_path, tiny_config, trainer={"max_epochs": 30, "accelerator": "gpu", "devices": 4, "num_nodes": 2,
                                                      "strategy": "ddp", "precision": "bf16-mixed"},
                      slurm={"partition": "gpu", "time": "12:00:00", "max_parallel": 4, "cpus_per_task": 6})
    cells = load_grid(grid).cells
    append_record(tmp_path / "results.jsonl", {"kind": "bench", "status": "ok", "cell": cells[0].name,
                                               "config_hash": cells[0].config_hash})
    script = tmp_path / "bench.sbatch"
    bench([str(grid), "--slurm", str(script), "--logger", "wandb"])
    text = script.read_text()
    assert "#SBATCH --array=1,2,3,4,5,6,7%4\n" in text  # cell 0 is done
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gres=gpu:4", "#SBATCH --partition=gpu",
                 "#SBATCH --time=12:00:00", "#SBATCH --cpus-per-task=6", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue"):
        assert line + "\n" in text
    assert f'srun python -m benchmarks.cell {grid} "$SLURM_ARRAY_TASK_ID" --results {tmp_path / "results.jsonl"}' in text
    assert "--logger wandb" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # The cell's arguments carry the trainer settings to Lightning.
    assert {"--trainer.devices=4", "--trainer.num_nodes=2", "--trainer.strategy=ddp", "--trainer.precision=bf16-mixed"} <= set(cells[1].args)
    with pytest.raises(GridError, match="sbatch is not on PATH"):
        bench([str(grid), "--slurm", str(script), "--submit"])


def test_wandb_offline_run_writes_its_local_run_folder(tiny_config, tmp_path, monkeypatch, no_network):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    grid = write_grid(tmp_path, tiny_config, architectures=["fcn"], transforms=["mel"], seeds=[0])
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "bench", str(grid), "--logger", "wandb"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = list((tmp_path / "cells").rglob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    (record,) = read_records(tmp_path / "results.jsonl")
    assert record["status"] == "ok"
    # The offline run log (what `wandb sync` uploads) holds the run's name, project, the cell's
    # config and its final test metrics and throughput.
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for text in ("tiny_gtzan/fcn-mel-seed0", "musiczoo-bench", "config_hash", record["config_hash"], "architecture",
                 "test/acc", "bench/train_samples_per_s"):
        assert text.encode() in log, text


def test_tensorboard_logger_writes_event_files(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    grid = write_grid(tmp_path, tiny_config, architectures=["fcn"], transforms=["mel"], seeds=[0])
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "bench", str(grid), "--logger", "tensorboard"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (run,) = {p.parent for p in (tmp_path / "cells").rglob("events.out.tfevents.*")}  # one run folder
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert "test/acc" in scalars and "bench/train_samples_per_s" in scalars


def test_training_throughput_of_a_cell_resumed_at_an_epoch_s_end():
    """A cell resumed from a checkpoint written at an epoch's end enters ``on_train_epoch_end``
    with no epoch begun (a killed real-excerpts cell then failed with a TypeError): nothing is
    counted for it, and the next epochs are."""
    from types import SimpleNamespace

    import torch

    from benchmarks.cell import TrainingThroughput

    trainer, batch = SimpleNamespace(world_size=1), {"target": torch.zeros(4)}
    meter = TrainingThroughput()
    meter.on_train_epoch_end(trainer, None)  # the resumed run's first hook
    assert (meter.samples, meter.seconds, meter.samples_per_second) == (0, 0.0, None)
    meter.on_train_epoch_start(trainer, None)
    meter.on_train_batch_end(trainer, None, None, batch, 0)
    meter.on_train_epoch_end(trainer, None)
    meter.on_train_epoch_end(trainer, None)  # a second end without a start adds nothing
    assert meter.samples == 4 and meter.seconds > 0 and meter.samples_per_second > 0


def test_best_names_the_lowest_seed_of_the_best_architecture_by_mean(tiny_config, tmp_path, capsys):
    """``--best mel``: the architecture with the best mean over seeds (not the luckiest single
    cell), its lowest seed, from each cell's latest record."""
    grid_path = write_grid(tmp_path, tiny_config)
    grid = load_grid(grid_path)
    append_record(grid.results, {"kind": "baseline", "status": "ok", "baseline": "mfcc_stats_logreg",
                                 "metrics": {"test/acc": 0.99}})  # the split's baseline shares the file: no cell
    accuracy = {("fcn", 0): 0.5, ("fcn", 1): 0.7, ("crnn", 0): 0.9, ("crnn", 1): 0.2}  # means 0.60 and 0.55
    for cell in grid.cells:
        if cell.transform == "mel":
            append_record(grid.results, {"kind": "bench", "status": "ok", "cell": cell.name, "config_hash": cell.config_hash,
                                         "metrics": {"test/acc": accuracy[cell.architecture, cell.seed]},
                                         "checkpoint": f"{cell.name}.ckpt"})
    bench([str(grid_path), "--best", "mel"])
    (fcn_seed0,) = [c for c in grid.cells if (c.architecture, c.transform, c.seed) == ("fcn", "mel", 0)]
    assert capsys.readouterr().out.split() == [str(fcn_seed0.index), f"{fcn_seed0.name}.ckpt"]
    (crnn_seed1,) = [c for c in grid.cells if (c.architecture, c.transform, c.seed) == ("crnn", "mel", 1)]
    append_record(grid.results, {"kind": "bench", "status": "ok", "cell": crnn_seed1.name, "config_hash": crnn_seed1.config_hash,
                                 "metrics": {"test/acc": 0.8}, "checkpoint": "again.ckpt"})  # a rerun: now 0.85 mean
    bench([str(grid_path), "--best", "mel"])
    assert capsys.readouterr().out.split()[1] == "tiny_gtzan/crnn-mel-seed0.ckpt"
    with pytest.raises(GridError, match="no finished cell with transform 'mfcc'"):
        bench([str(grid_path), "--best", "mfcc"])
    bench([str(grid_path), "--list"])
    assert capsys.readouterr().out.count("done   ") == 4
