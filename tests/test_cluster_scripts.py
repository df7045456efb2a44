"""The shipped sbatch scripts and torchrun command: valid bash, and the CLI accepts every flag they pass."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "benchmarks" / "cluster"

# Stand-ins for the launchers: run the command each would start on one rank, printing the
# parsed config instead of training (no SLURM or GPU here).
FAKE_SRUN = '#!/bin/bash\nexec "$@" --print_config\n'
FAKE_TORCHRUN = """#!/bin/bash
while [ "$1" != "-m" ]; do shift; done
shift
exec "$PYTHON" -m "$@" --print_config
"""
# ``srun musiczoo index ...``: the arguments as ``musiczoo index`` parses them, as JSON.
FAKE_SRUN_INDEX = """#!/bin/bash
[ "$1 $2" = "musiczoo index" ] || { echo "not musiczoo index: $*" >&2; exit 1; }
shift 2
exec "$PYTHON" -c 'import json, sys; from zoo.cli.recommend import index_parser
print(json.dumps(vars(index_parser().parse_args(sys.argv[1:])), default=str))' "$@"
"""


@pytest.mark.parametrize("script", ["fit.sbatch", "index.sbatch", "torchrun.sh"])
def test_scripts_are_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(CLUSTER / script)]).returncode == 0


def launch(tmp_path, script: str, srun: str = FAKE_SRUN, **variables) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", srun), ("torchrun", FAKE_TORCHRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, **variables, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),  # this checkout's code
           "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(["bash", str(CLUSTER / script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return yaml.safe_load(done.stdout)


def test_sbatch_script_passes_lightning_what_slurm_provides(tmp_path):
    config = launch(tmp_path, "fit.sbatch", CONFIG=str(ROOT / "benchmarks/configs/mtat_resnet_vit.yaml"),
                    SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="4", SLURM_CPUS_PER_TASK="8",
                    SLURM_RESTART_COUNT="1", DATA="/data/mtat", RUN="runs/mtat")
    trainer, data = config["trainer"], config["data"]["init_args"]
    # devices stays the string the shell passed: Lightning accepts "4" like 4
    assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"], trainer["precision"]) == (2, "4", "ddp", "bf16-mixed")
    assert trainer["accelerator"] == "gpu" and trainer["default_root_dir"] == "runs/mtat"
    assert data["prepare_data_per_node"] is False and data["num_workers"] == 7 and data["cache_dir"] == "runs/mtat/cache"
    assert config["ckpt_path"] == "last"  # a requeued job resumes
    (tmp_path / "first").mkdir()
    first = launch(tmp_path / "first", "fit.sbatch", CONFIG=str(ROOT / "benchmarks/configs/mtat_resnet_vit.yaml"),
                   SLURM_JOB_NUM_NODES="1", SLURM_NTASKS_PER_NODE="2", SLURM_CPUS_PER_TASK="4")
    assert first["ckpt_path"] is None and str(first["trainer"]["devices"]) == "2"  # a first run starts fresh


def test_torchrun_command_is_accepted_by_the_cli(tmp_path):
    config = launch(tmp_path, "torchrun.sh", CONFIG=str(ROOT / "benchmarks/configs/gtzan_resnet_gru.yaml"),
                    NNODES="2", GPUS="8", RESUME="1", DATA="/data/gtzan")
    trainer = config["trainer"]
    assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"]) == (2, "8", "ddp")
    assert config["ckpt_path"] == "last" and config["data"]["init_args"]["root"] == "/data/gtzan"


def test_index_sbatch_passes_lightning_what_slurm_provides(tmp_path):
    args = launch(tmp_path, "index.sbatch", srun=FAKE_SRUN_INDEX, SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="4",
                  MODELS="runs/models/genre hub:org/tagging", MUSIC="/data/music", LIBRARY="/shared/music.library")
    assert (args["accelerator"], args["num_nodes"], args["devices"], args["strategy"]) == ("gpu", 2, "4", "ddp")
    assert args["models_and_music_dir"] == ["runs/models/genre", "hub:org/tagging", "/data/music"]
    assert args["out"] == "/shared/music.library" and args["device"] is None  # each rank's GPU is Lightning's choice
