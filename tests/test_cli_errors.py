"""The ``musiczoo`` command's own errors: one line on stderr, exit status 2, the traceback only on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_CONFIG

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
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_a_data_root_that_does_not_exist(tmp_path):
    proc = musiczoo("fit", "--config", config(tmp_path, tmp_path / "no_gtzan_here"))
    assert_one_line(proc, "musiczoo fit: error: no GTZAN data under", "no_gtzan_here", "found nothing")


def test_a_bad_value(tmp_path, gtzan_rerelease):
    proc = musiczoo("fit", "--config", config(tmp_path, gtzan_rerelease), "--data.init_args.batch_size=0")
    assert_one_line(proc, "musiczoo fit: error: chunk_seconds, sample_rate and batch_size must be positive")


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
