"""The ``musiczoo`` command's own errors: one line on stderr, exit status 2, the traceback only on request."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_CONFIG, malicious, train_tiny_crnn

REPO = Path(__file__).resolve().parents[1]


def musiczoo(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, **(env or {})})


def config(tmp_path: Path, root, **init_args) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "run")
    cfg["data"]["init_args"].update({"root": str(root), "sample_rate": 8000, "cache_dir": str(tmp_path / "cache"), **init_args})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_one_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and the error as the only line printed, stdout and stderr together."""
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 2, printed[-2000:]
    lines = printed.strip().splitlines()
    assert len(lines) == 1 and proc.stderr.strip() == lines[0] and "Traceback" not in printed, printed[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_a_data_root_that_does_not_exist(tmp_path):
    proc = musiczoo("fit", "--config", config(tmp_path, tmp_path / "no_gtzan_here"))
    assert_one_line(proc, "musiczoo fit: error: no GTZAN data under", "no_gtzan_here", "found nothing")


def test_a_split_without_its_lists_names_the_command_that_fetches_them(tmp_path, gtzan_rerelease):
    root = shutil.copytree(gtzan_rerelease, tmp_path / "gtzan", ignore=shutil.ignore_patterns("splits"))
    proc = musiczoo("fit", "--config", config(tmp_path, root, split="stratified"))
    assert_one_line(proc, f"musiczoo fit: error: GTZAN stratified split needs its lists (train_stratified.txt is not in "
                          f"{root / 'splits'}): run musiczoo download gtzan --root DIR (or --lists-only)")


def test_a_bad_value(tmp_path, gtzan_rerelease):
    proc = musiczoo("fit", "--config", config(tmp_path, gtzan_rerelease), "--data.init_args.batch_size=0")
    assert_one_line(proc, "musiczoo fit: error: chunk_seconds, sample_rate and batch_size must be positive")


def test_a_wrong_architecture(tmp_path, gtzan_rerelease):
    proc = musiczoo("fit", "--config", config(tmp_path, gtzan_rerelease), "--model.architecture=nope")
    assert_one_line(proc, "musiczoo fit: error: unknown model 'nope'; valid models:", "crnn")


def test_a_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model:\n  architecture: crnn\n  transform_params: {n_fft: 512\n")
    assert_one_line(musiczoo("fit", "--config", bad), f"musiczoo fit: error: {bad}: invalid YAML at line")
    assert_one_line(musiczoo("test", "--config", tmp_path / "missing.yaml"), "config file", "missing.yaml does not exist")


def test_a_cache_dir_that_cannot_be_created(tmp_path, gtzan_rerelease):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder should go")
    proc = musiczoo("fit", "--config", config(tmp_path, gtzan_rerelease, cache_dir=str(blocker / "cache")))
    assert_one_line(proc, "musiczoo fit: error:", str(blocker))


#: What a run printed before the CLI left out Lightning's notes (zoo.cli.common.quiet_lightning)
#: and said explicitly that ``last.ckpt`` is a full checkpoint (zoo.resume.LastCheckpoint).
NOISE = ("litlogger", "litmodels", "GPU available", "TPU available", "will override existing callbacks",
         "weights_only", "Seed set to")


def test_a_fit_prints_what_runs_and_its_result_without_lightning_notes(tiny_config, tmp_path):
    proc = musiczoo("fit", "--config", tiny_config)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-2000:]
    assert [phrase for phrase in NOISE if phrase in printed] == [], printed
    first, second = proc.stdout.splitlines()[:2]
    assert first.startswith("musiczoo fit: crnn on mel, 10 classes, seed 0; gtzan fault_filtered split (synthetic)")
    assert first.endswith("442 train, 197 val clips")  # the listed 443 less the empty jazz.00054.wav
    assert second == f"  checkpoints: {tmp_path / 'run' / 'checkpoints'}"
    assert f"best checkpoint: {tmp_path / 'run' / 'checkpoints' / 'best-epoch000.ckpt'} (val/acc " in proc.stdout


def test_only_the_named_lightning_notes_are_left_out():
    from zoo.cli.common import LIGHTNING_NOTES

    override = "The following callbacks returned in `LightningModule.configure_callbacks` will override existing callbacks passed to Trainer: "
    left_out = ["Seed set to 0", "[rank: 1] Seed set to 7", "GPU available: False, used: False",
                "TPU available: False, using: 0 TPU cores", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]",
                "💡 Tip: For seamless cloud logging ...", override + "ModelCheckpoint", override + "LastCheckpoint",
                override + "LastCheckpoint, ModelCheckpoint",
                "Loading `train_dataloader` to estimate number of stepping batches."]
    shown = [override + "EarlyStopping", override + "ModelCheckpoint, TQDMProgressBar",
             "Restoring states from the checkpoint path at runs/x/last.ckpt", "`Trainer.fit` stopped: `max_epochs=1` reached.",
             "GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.",
             "Using 16bit Automatic Mixed Precision (AMP)"]
    assert [m for m in left_out if not LIGHTNING_NOTES.fullmatch(m)] == []
    assert [m for m in shown if LIGHTNING_NOTES.fullmatch(m)] == []


def test_verbose_brings_lightning_notes_back(tmp_path):
    proc = musiczoo("fit", "--config", config(tmp_path, tmp_path / "nowhere"), env={"MUSICZOO_VERBOSE": "1"})
    assert proc.returncode == 2
    assert "GPU available" in proc.stdout and "Seed set to 0" in proc.stdout and "litlogger" in proc.stdout


def test_verbose_shows_the_traceback(tmp_path):
    proc = musiczoo("fit", "--config", config(tmp_path, tmp_path / "nowhere"), "--verbose")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("musiczoo fit: error: no GTZAN data under")
    by_env = musiczoo("fit", "--config", config(tmp_path, tmp_path / "nowhere"), env={"MUSICZOO_VERBOSE": "1"})
    assert "Traceback" in by_env.stderr


@pytest.mark.parametrize("args,fragment", [
    (["predict", "no/such/model", "x.wav"], "musiczoo predict: error:"),
    (["recommend", "no_library", "--track", "x"], "musiczoo recommend: error: no_library: not a musiczoo library"),
    (["verify", "gtzan", "--root", "no_dataset"], "musiczoo verify: error: no GTZAN data under no_dataset"),
])
def test_other_verbs(args, fragment):
    assert_one_line(musiczoo(*args), fragment)


@pytest.fixture(scope="module")
def damaged_checkpoints(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(a checkpoint whose unpickling would create the marker file, a real checkpoint cut in half, the marker)."""
    tmp = tmp_path_factory.mktemp("damaged")
    marker = tmp / "pwned"
    whole = train_tiny_crnn(tmp / "run").read_bytes()
    (tmp / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    return malicious(tmp / "evil.ckpt", marker), tmp / "truncated.ckpt", marker


def in_process(capfd, *args) -> str:
    """The ``musiczoo`` entry point in this process (no interpreter start): exit status 2 and one
    line, stdout and stderr together (at the file descriptors); returns the line."""
    from zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(map(str, args)))
    out, err = capfd.readouterr()
    assert e.value.code == 2 and not out.strip() and len(err.strip().splitlines()) == 1, out + err
    return err.strip()


@pytest.mark.parametrize("verb", ["test", "validate", "fit"])
def test_a_hostile_or_truncated_ckpt_path_is_one_line_and_never_runs(tmp_path, damaged_checkpoints, capfd, verb):
    evil, truncated, marker = damaged_checkpoints
    cfg = config(tmp_path, tmp_path / "gtzan")  # refused before the data is looked at
    line = in_process(capfd, verb, "--config", cfg, "--ckpt_path", evil)
    assert line.startswith(f"musiczoo {verb}: error: {evil}: refused to load: it is not a checkpoint of tensors and "
                           "plain data (UnpicklingError: WeightsUnpickler error: Unsupported global: GLOBAL io.open")
    assert line.endswith("Only weights-only loading is used, because unpickling arbitrary objects can run code.")
    line = in_process(capfd, verb, "--config", cfg, "--ckpt_path", truncated)
    assert line.startswith(f"musiczoo {verb}: error: {truncated}: cannot read it as a checkpoint: truncated or not "
                           "a PyTorch file (RuntimeError: PytorchStreamReader failed reading zip archive")
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_the_real_command_refuses_a_hostile_ckpt_path_in_a_config_file(tmp_path, damaged_checkpoints):
    """``ckpt_path`` set in the config rather than on the command line, through ``python -m zoo.cli``."""
    evil, _, marker = damaged_checkpoints
    cfg = config(tmp_path, tmp_path / "gtzan")
    cfg.write_text(cfg.read_text() + f"ckpt_path: {evil}\n")
    assert_one_line(musiczoo("test", "--config", cfg), f"musiczoo test: error: {evil}: refused to load")
    assert not marker.exists()
