"""Bad inputs around published models get one clear line, never a wrong answer or lost files.

* ``publish`` into a folder that holds anything is refused unless ``--force``; then only its
  three files are replaced, each atomically, with the user's umask.
* A string that names no local folder is a Hub id only when unambiguous: a mistyped local
  path is an error with the close local names, and nothing is fetched.
* A hostile or damaged config.json (or checkpoint) is refused before any model is built,
  with one line naming the file and the field, in-process and through ``musiczoo predict``.

The Hub is never contacted: ``snapshot_download`` is replaced and sockets are blocked.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import timm
import torch

from datamodules.primitives import files
from tests.conftest import TINY_CRNN, TINY_LABELS, TINY_SR, train_tiny_crnn
from zoo import hub
from zoo.checkpoint import load_checkpoint, load_checkpoint_dict, publish
from zoo.cli.models import cmd_predict, cmd_publish, load_model
from zoo.factory import create_model, from_pretrained
from zoo.frontends import UnknownNameError
from zoo.hub import read_spec, save_pretrained
from zoo.spec import ModelError

SR, LABELS, TINY = TINY_SR, TINY_LABELS, TINY_CRNN
pytestmark = pytest.mark.usefixtures("no_network")
REPO = Path(__file__).resolve().parents[1]
PUBLISHED = ["README.md", "config.json", "model.safetensors"]


@pytest.fixture()
def no_fetch(monkeypatch):
    """Any Hub download (ours or timm's) fails the test."""
    def fetch(*args, **kwargs):
        pytest.fail(f"the Hub was asked for {args} {kwargs}")

    monkeypatch.setattr(hub, "snapshot_download", fetch)
    monkeypatch.setattr(timm, "create_model", fetch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, published folder, a test wav) of a tiny CRNN trained for 2 steps (as tests/test_hub.py does)."""
    tmp = tmp_path_factory.mktemp("trained")
    ckpt = train_tiny_crnn(tmp / "run")
    folder = publish(ckpt, tmp / "published", metrics={})
    wav = tmp / "clip.wav"
    t = np.arange(int(1.5 * SR)) / SR
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return ckpt, folder, wav


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- 4. publish never overwrites a user's files by surprise -----------------------------------
def user_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my own notes\n")
    (out / "config.json").write_text('{"mine": true}\n')
    (out / "notes.txt").write_text("keep me\n")
    return out


def test_publish_into_a_non_empty_folder_is_refused(trained, tmp_path):
    ckpt, folder, _ = trained
    out = user_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit, match=r"musiczoo publish: error: .*out is not empty \(README.md, config.json, "
                                         r"notes.txt\).*--force"):
        cmd_publish([str(ckpt), str(out)])
    with pytest.raises(ModelError, match="not empty"):
        publish(ckpt, out)
    with pytest.raises(ModelError, match="not empty"):
        save_pretrained(from_pretrained(folder), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, nothing left behind
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        save_pretrained(from_pretrained(folder), tmp_path / "a_file", force=True)
    # An empty folder (e.g. from mkdtemp) is fine without --force.
    (tmp_path / "empty").mkdir()
    cmd_publish([str(ckpt), str(tmp_path / "empty")])
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == PUBLISHED


def test_publish_force_replaces_only_its_three_files_atomically(trained, tmp_path, monkeypatch, capsys):
    ckpt, folder, _ = trained
    out = user_folder(tmp_path)
    notes = out / "notes.txt"
    notes_stat = notes.stat()
    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append((Path(src), Path(dst), Path(src).is_file()))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", recording_replace)
    cmd_publish([str(ckpt), str(out), "--force"])
    assert f"published to {out}" in capsys.readouterr().out
    # Each of the three files was complete in a temporary file of the same folder, then renamed over the old one.
    assert sorted(dst.name for _, dst, _ in replaced) == PUBLISHED
    assert all(src.parent == out == dst.parent and src.name != dst.name and complete for src, dst, complete in replaced)
    assert sorted(p.name for p in out.iterdir()) == sorted(PUBLISHED + ["notes.txt"])  # no temporary file left
    assert notes.read_text() == "keep me\n"
    assert (notes.stat().st_ino, notes.stat().st_mtime_ns) == (notes_stat.st_ino, notes_stat.st_mtime_ns)
    assert json.loads((out / "config.json").read_text())["label_names"] == LABELS
    assert (out / "README.md").read_text() != "my own notes\n"
    torch.testing.assert_close(from_pretrained(out).state_dict(), from_pretrained(folder).state_dict())
    # force=True in Python does the same.
    publish(ckpt, out, force=True)
    save_pretrained(from_pretrained(folder), out, force=True)
    assert notes.read_text() == "keep me\n" and sorted(p.name for p in out.iterdir()) == sorted(PUBLISHED + ["notes.txt"])


def test_a_failed_publish_replaces_nothing(trained, tmp_path, monkeypatch):
    _, folder, _ = trained
    out = user_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_card(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(hub, "model_card", broken_card)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(from_pretrained(folder), out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old files intact, no temporary file left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_published_files_follow_the_umask(trained, tmp_path, umask, mode):
    _, folder, _ = trained
    model = from_pretrained(folder)
    old = os.umask(umask)
    try:
        fresh = save_pretrained(model, tmp_path / "fresh")
        forced = user_folder(tmp_path)
        os.chmod(forced / "config.json", 0o600)  # an old file's mode is not kept: the new file follows the umask
        save_pretrained(model, forced, force=True)
    finally:
        os.umask(old)
    for out in (fresh, forced):
        assert {name: oct(mode_of(out / name)) for name in PUBLISHED} == {name: oct(mode) for name in PUBLISHED}


# ---- 5. a mistyped local path is never a download ---------------------------------------------
@pytest.fixture()
def runs(trained, tmp_path, monkeypatch):
    """The working folder holds runs/pub (a published model) and runs/other."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained[1], tmp_path / "runs" / "pub")
    (tmp_path / "runs" / "other").mkdir()
    return tmp_path / "runs"


def test_a_typo_of_a_local_folder_is_an_error_with_suggestions(runs, trained, no_fetch, capsys):
    wav = trained[2]
    expected = r"no published model folder runs/pubx \(did you mean runs/pub\?\)"
    with pytest.raises(ModelError, match=expected):
        from_pretrained("runs/pubx")
    with pytest.raises(ModelError, match=expected):
        load_model("runs/pubx")
    with pytest.raises(SystemExit, match="musiczoo predict: error: " + expected + ".*hf://runs/pubx"):
        cmd_predict(["runs/pubx", str(wav)])
    assert "Hugging Face Hub" not in capsys.readouterr().err.replace("hf://", "")  # nothing announced as fetched
    with pytest.raises(ModelError, match=r"no published model folder runs/pub/model: .* neither a folder nor"):
        from_pretrained("runs/pub/model")  # deeper paths are never Hub ids
    with pytest.raises(ModelError, match=r"no published model folder runs/otherr/m \(did you mean runs/other/m\?\)"):
        (runs / "other" / "m").mkdir()
        from_pretrained("runs/otherr/m")
    with pytest.raises(ModelError, match="is a file, not a published model folder"):
        from_pretrained("runs/pub/config.json")
    assert load_model("runs/pub").spec.label_names == tuple(LABELS)  # the real folder still loads


def test_hub_prefixes_and_unambiguous_ids_go_to_the_hub(runs, trained, monkeypatch, capsys):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["allow_patterns"]))
        return str(trained[1])

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    assert from_pretrained("hf://someone/tiny-crnn").spec.label_names == tuple(LABELS)
    assert from_pretrained("hf-hub:someone/tiny-crnn").spec.label_names == tuple(LABELS)
    assert from_pretrained("someone/tiny-crnn").spec.label_names == tuple(LABELS)  # 'someone' is no local folder
    assert from_pretrained("hf://runs/pubx").spec.label_names == tuple(LABELS)  # explicit: the Hub, though runs/ is local
    assert [c[0] for c in calls] == ["someone/tiny-crnn"] * 3 + ["runs/pubx"]
    assert all(patterns == ["config.json", "model.safetensors", "README.md"] for _, patterns in calls)
    cmd_predict(["hf://someone/tiny-crnn", str(trained[2]), "--format", "json"])
    out = capsys.readouterr()
    assert "fetching someone/tiny-crnn from the Hugging Face Hub" in out.err
    assert json.loads(out.out)[0]["error"] is None
    with pytest.raises(ModelError, match="hf:// must be followed by a Hugging Face Hub id"):
        from_pretrained("hf://not a repo")


# ---- 6. hostile or damaged config.json --------------------------------------------------------
def short_labels(c):
    c["label_names"] = c["label_names"][:2]


def set_field(field, value):
    def mutate(c):
        c[field] = value
    mutate.__name__ = f"{field}={value!r}"
    return mutate


def set_param(key, value):
    def mutate(c):
        c["transform_params"][key] = value
    return mutate


HOSTILE = [
    ("chunk_seconds", set_field("chunk_seconds", 0)),
    ("chunk_seconds", set_field("chunk_seconds", -1)),
    ("chunk_seconds", set_field("chunk_seconds", "abc")),
    ("label_names", short_labels),
    ("num_classes", set_field("num_classes", 1e8)),
    ("num_classes", set_field("num_classes", 100_000_000)),
    ("sample_rate", set_field("sample_rate", "x")),
    ("sample_rate", set_field("sample_rate", 10)),
    ("task", set_field("task", "ranking")),
    ("transform", set_field("transform", "wavelet")),
    ("transform_params", set_param("bogus", 1)),
    ("transform_params.n_mels", set_param("n_mels", "128")),
    ("transform_params.n_fft", set_param("n_fft", -1)),
    ("architecture", set_field("architecture", "timm/hf-hub:timm/resnet18.a1_in1k")),
    ("architecture", set_field("architecture", "timm/hf_hub:timm/resnet18.a1_in1k")),
    ("architecture", set_field("architecture", 7)),
    ("model_params", set_field("model_params", [1, 2])),
    ("label_names", set_field("label_names", "abc")),
    ("synthetic", set_field("synthetic", "yes")),
    ("musiczoo_config_version", set_field("musiczoo_config_version", "x")),
    ("target_scale", set_field("target_scale", [9, 1])),
]
IDS = ["chunk0", "chunk-1", "chunk_abc", "labels_short", "classes_1e8", "classes_huge", "rate_x", "rate_10",
       "task_ranking", "transform_unknown", "tparams_unknown_key", "tparams_string", "tparams_negative",
       "timm_hf-hub", "timm_hf_hub", "architecture_int", "model_params_list", "labels_string", "synthetic_str",
       "version_str", "scale_reversed"]


def hostile_folder(trained, tmp_path, mutate) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir(parents=True)
    config = json.loads((trained[1] / "config.json").read_text())
    mutate(config)
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(trained[1] / "model.safetensors", folder / "model.safetensors")
    return folder


def predict_command(folder: Path, clip: Path) -> subprocess.CompletedProcess:
    """``musiczoo predict FOLDER clip`` in a fresh process (it imports torch and Lightning: seconds)."""
    return subprocess.run([sys.executable, "-m", "zoo.cli", "predict", str(folder), str(clip)], capture_output=True,
                          text=True, cwd=REPO, timeout=300, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def predicted_in_process(folder: Path, clip: Path, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command's own entry point, ``musiczoo predict FOLDER clip``."""
    from zoo.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(folder), str(clip)])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("field, mutate", HOSTILE, ids=IDS)
def test_hostile_config_is_one_line_naming_file_and_field(trained, tmp_path, field, mutate, no_fetch, capsys):
    folder = hostile_folder(trained, tmp_path, mutate)
    prefix = f"{folder / 'config.json'}: {field} "
    with pytest.raises(ModelError) as e:
        read_spec(folder)
    assert str(e.value).startswith(prefix) and "\n" not in str(e.value)
    with pytest.raises(ModelError) as e:
        from_pretrained(folder)
    assert str(e.value).startswith(prefix)
    # Through the command: one line on stderr, a non-zero exit, no traceback.
    code, out, err = predicted_in_process(folder, trained[2], capsys)
    assert code != 0 and out == ""
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"musiczoo predict: error: {e.value}"]


def test_a_hostile_config_in_a_fresh_process_is_the_same_one_line(trained, tmp_path, no_fetch, capsys):
    """The in-process answers above are the command's: the first hostile case in its own interpreter."""
    folder = hostile_folder(trained, tmp_path, HOSTILE[0][1])
    proc = predict_command(folder, trained[2])
    assert proc.returncode == predicted_in_process(folder, trained[2], capsys)[0] != 0
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == predicted_in_process(folder, trained[2], capsys)[2].strip().splitlines()
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_message_says_what_the_field_must_be(trained, tmp_path):
    folder = hostile_folder(trained, tmp_path, set_field("chunk_seconds", "abc"))
    with pytest.raises(ModelError, match=r"config.json: chunk_seconds must be a positive number of seconds "
                                       r"\(at most 600\), got 'abc'$"):
        from_pretrained(folder)
    folder = hostile_folder(trained, tmp_path / "b", short_labels)
    with pytest.raises(ModelError, match=r"config.json: label_names must name each of the 3 classes \(num_classes\), got 2"):
        from_pretrained(folder)


def test_a_head_too_large_is_refused_before_it_is_allocated(trained, tmp_path):
    """100,000 classes pass the range check; on a 1280-dimensional embedding the head alone would be 128 M
    parameters, refused from the model's size measured without allocating its weights."""
    mutate = set_field("architecture", "timm/efficientnet_b0")

    def both(c):
        mutate(c)
        c["num_classes"] = 100_000
        c["label_names"] = [f"tag{i}" for i in range(100_000)]
        c["model_params"] = {}

    folder = hostile_folder(trained, tmp_path, both)
    with pytest.raises(ModelError, match=r"config.json: num_classes 100000 makes a head of 128,100,000 parameters"):
        from_pretrained(folder)


def test_timm_source_prefixes_are_refused_everywhere(no_fetch):
    for name in ("timm/hf-hub:timm/resnet18.a1_in1k", "timm/hf_hub:timm/resnet18", "timm/local-dir:/tmp/x"):
        with pytest.raises(UnknownNameError, match="only plain timm architecture names"):
            create_model(name, num_classes=3)


@pytest.mark.parametrize("field, value", [("chunk_seconds", "abc"), ("chunk_seconds", -1), ("num_classes", 10**8),
                                          ("task", "ranking"), ("sample_rate", "x"),
                                          ("architecture", "timm/hf-hub:timm/resnet18.a1_in1k")])
def test_hostile_checkpoint_hyperparameters(trained, tmp_path, field, value, no_fetch):
    raw = load_checkpoint_dict(trained[0])
    raw["hyper_parameters"][field] = value
    torch.save(raw, tmp_path / "bad.ckpt")
    prefix = f"{tmp_path / 'bad.ckpt'} (hyper_parameters): {field} "
    with pytest.raises(ModelError) as e:
        load_checkpoint(tmp_path / "bad.ckpt")
    assert str(e.value).startswith(prefix)
    with pytest.raises(SystemExit, match="musiczoo publish: error: .*bad.ckpt"):
        cmd_publish([str(tmp_path / "bad.ckpt"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_publish_checks_the_metadata_it_is_given(trained, tmp_path):
    with pytest.raises(SystemExit, match=r"config.json: chunk_seconds must be a positive number of seconds.*got 0.0"):
        cmd_publish([str(trained[0]), str(tmp_path / "out"), "--chunk-seconds", "0"])
    assert not (tmp_path / "out").exists()


def test_a_damaged_metrics_file_is_one_line_naming_it(trained, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"test/acc": 0.5,')
    with pytest.raises(SystemExit, match=rf"musiczoo publish: error: {re.escape(str(metrics))}: invalid JSON \("):
        cmd_publish([str(trained[0]), str(tmp_path / "out"), "--metrics", str(metrics)])
    assert not (tmp_path / "out").exists()  # nothing written
