"""Publishing and loading: checkpoint -> safetensors + config.json + card -> from_pretrained, safely.

A tiny model is trained with a real Lightning Trainer; everything else (loading in a fresh
process, pretrained names, the Hub) is checked against it. The Hub is never contacted:
``snapshot_download`` and ``HfApi`` are replaced, and sockets are blocked.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from huggingface_hub import HfApi
from safetensors.torch import load_file

from tests.conftest import TINY_CRNN, TINY_LABELS, TINY_SR, malicious, train_tiny_crnn
from zoo import hub
from datamodules.primitives.chunks import probabilities
from zoo.checkpoint import load_checkpoint, load_checkpoint_dict, publish
from zoo.cli.models import cmd_predict, cmd_publish, load_model
from zoo.factory import create_model, from_pretrained
from zoo.frontends import UnknownNameError
from zoo.hub import UnsafeCheckpointError, save_pretrained
from zoo.spec import ModelError
from datamodules.primitives.audio import load_audio
from zoo.predict import predict_files
from zoo.pretrained import PRETRAINED, PretrainedEntry, list_pretrained, register_pretrained
from zoo.task import MusicTask

SR, LABELS, TINY = TINY_SR, TINY_LABELS, TINY_CRNN
pytestmark = pytest.mark.usefixtures("no_network")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def empty_pretrained():
    """An empty ``arch.tag`` table for one test, restored afterwards."""
    saved = dict(PRETRAINED)
    PRETRAINED.clear()
    yield PRETRAINED
    PRETRAINED.clear()
    PRETRAINED.update(saved)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, published folder, a test wav) of a CRNN trained for 2 steps."""
    tmp = tmp_path_factory.mktemp("trained")
    ckpt = train_tiny_crnn(tmp / "run")
    (ckpt.parent / "metrics.json").write_text(json.dumps({"test/acc": 0.5, "test/f1_macro": 0.25}))
    folder = publish(ckpt, tmp / "published")
    wav = tmp / "clip.wav"
    t = np.arange(int(2.5 * 22050)) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3
    sf.write(wav, stereo.astype(np.float32), 22050)
    return ckpt, folder, wav


def lightning_net(ckpt):
    """The checkpoint's model as Lightning itself restores it (the reference for every loader here)."""
    return MusicTask.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).net.eval()


def logits_of(model, wav):
    with torch.no_grad():
        return model(load_audio(wav, SR)[None, :SR])


# ---- publish / from_pretrained ---------------------------------------------------------
def test_publish_writes_safetensors_config_and_card(trained):
    ckpt, folder, _ = trained
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    state = load_file(folder / "model.safetensors")
    assert set(state) == set(lightning_net(ckpt).state_dict())
    assert not any(k.endswith(("window", "mel_fb", "dct")) for k in state)  # rebuilt from the config
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "crnn" and config["model_params"] == TINY
    assert config["transform"] == "mel" and config["transform_params"]["n_mels"] == 128
    assert config["transform_params"]["f_max"] == SR / 2 and config["sample_rate"] == SR
    assert config["chunk_seconds"] == 1.0  # the data module's chunk_seconds, not the 3 s default
    assert config["label_names"] == LABELS and config["task"] == "multiclass" and config["num_classes"] == 3
    assert (config["dataset"], config["split"], config["synthetic"]) == ("gtzan", "fault_filtered", True)
    assert config["metrics"] == {"test/acc": 0.5, "test/f1_macro": 0.25}  # metrics.json next to the checkpoint
    assert set(config["versions"]) == {"musiczoo", "torch", "torchaudio", "lightning", "timm"}
    assert config["versions"]["torch"] == torch.__version__.split("+")[0]
    assert config["git_commit"] is None or len(config["git_commit"].split("+")[0]) == 40


def test_from_pretrained_in_a_fresh_process_matches_the_checkpoint(trained, tmp_path):
    ckpt, folder, wav = trained
    script = textwrap.dedent(f"""
        import json, torch
        from zoo import from_pretrained
        from datamodules.primitives.audio import load_audio
        from zoo.predict import predict_files
        model = from_pretrained({str(folder)!r})
        assert not model.training
        with torch.no_grad():
            logits = model(load_audio({str(wav)!r}, {SR})[None, :{SR}])
        (pred,) = predict_files(model, [{str(wav)!r}], top_k=0, segments=True, progress=False)
        print(json.dumps({{"logits": logits.tolist(), "labels": list(model.spec.label_names), "task": model.spec.task,
                          "prediction": pred.to_dict()}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(fresh["logits"]), logits_of(lightning_net(ckpt), wav), rtol=0, atol=1e-6)
    assert fresh["labels"] == LABELS and fresh["task"] == "multiclass"
    (here,) = predict_files(load_checkpoint(ckpt), [wav], top_k=0, segments=True, progress=False)
    assert fresh["prediction"]["labels"].keys() == here.labels.keys()
    np.testing.assert_allclose(list(fresh["prediction"]["labels"].values()), list(here.labels.values()), atol=1e-6)
    assert len(fresh["prediction"]["segments"]) == 3  # 2.5 s in 1 s chunks


def test_config_round_trip(trained, tmp_path):
    _, folder, wav = trained
    model = from_pretrained(folder)
    assert model.spec.label_names == tuple(LABELS) and model.spec.task == "multiclass" and model.spec.chunk_seconds == 1.0
    again = save_pretrained(model, tmp_path / "again")
    first, second = (json.loads((f / "config.json").read_text()) for f in (folder, again))
    assert first == second
    torch.testing.assert_close(logits_of(from_pretrained(again), wav), logits_of(model, wav), rtol=0, atol=0)
    changed = save_pretrained(model, tmp_path / "meta", dataset="mtat", metrics={"test/roc_auc": 0.9})
    config = json.loads((changed / "config.json").read_text())
    assert config["dataset"] == "mtat" and config["metrics"] == {"test/roc_auc": 0.9}
    with pytest.raises(TypeError, match="unknown metadata"):
        save_pretrained(model, tmp_path / "bad", licence="mit")


def test_model_card(trained):
    _, folder, _ = trained
    card = (folder / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["library_name"] == "musiczoo"
    assert {"audio-classification", "music", "multiclass", "crnn", "mel"} <= set(meta["tags"])
    assert meta["datasets"] == ["synthetic-gtzan"]  # never claims the real dataset
    assert meta["metrics"] == ["accuracy", "f1"]
    for section in ("## Usage", "## Training data", "## Results", "## Limitations"):
        assert section in body
    assert "from_pretrained(" in body and "musiczoo predict" in body
    assert "the training data was synthetic" in body and "trained on synthetic data" in body
    assert "| test/acc | 0.5000 |" in body


def test_model_card_of_real_data_states_its_caveats(trained, tmp_path):
    model = from_pretrained(trained[1])
    card = (save_pretrained(model, tmp_path / "real", synthetic=False, metrics={}) / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    assert meta["datasets"] == ["gtzan"] and "synthetic-data" not in meta["tags"] and "metrics" not in meta
    assert "synthetic" not in card.lower() and "fault-filtered" in card and "No test results" in card


def test_a_regression_model_keeps_its_targets_and_scale_through_publishing(tmp_path):
    """config.json records the target names and the declared scale; the card speaks of values on
    it; the loaded model is the same function on that scale."""
    model = create_model("fcn", num_classes=2, sample_rate=SR, task="regression", label_names=["valence", "arousal"],
                         target_scale=(1.0, 9.0), channels=[8] * 5).eval()
    folder = save_pretrained(model, tmp_path / "emotion", dataset="deam", split="deam2015test", synthetic=True)
    config = json.loads((folder / "config.json").read_text())
    assert (config["task"], config["label_names"], config["target_scale"]) == ("regression", ["valence", "arousal"], [1.0, 9.0])
    card = (folder / "README.md").read_text()
    assert "2 values on the scale 1-9" in card and "{target: value}" in card and "regression" in card
    loaded = from_pretrained(folder).eval()
    assert loaded.spec == model.spec.replace(dataset="deam", split="deam2015test", synthetic=True)
    assert loaded.spec.target_scale == (1.0, 9.0)
    x = torch.randn(2, SR)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_checkpoint_of_the_earlier_format_still_loads(trained, tmp_path):
    """Before the redesign a checkpoint named the architecture ``model`` and kept the chunk length
    (``clip_seconds``), split and synthetic flag only among the data module's hyperparameters."""
    raw = load_checkpoint_dict(trained[0])
    hp = raw["hyper_parameters"]
    hp["model"] = hp.pop("architecture")
    del hp["chunk_seconds"], hp["provenance"]
    raw["datamodule_hyper_parameters"] = {"_class_path": "datamodules.gtzan.GTZANDataModule", "root": Path("/data/gtzan"),
                                          "split": "stratified", "clip_seconds": 3.5, "synthetic": False}
    torch.save(raw, tmp_path / "old.ckpt")
    model = load_checkpoint(tmp_path / "old.ckpt")
    assert (model.spec.architecture, model.spec.chunk_seconds) == ("crnn", 3.5)
    assert (model.spec.provenance.dataset, model.spec.provenance.split, model.spec.provenance.synthetic) == ("gtzan", "stratified", False)
    torch.testing.assert_close(logits_of(model, trained[2]), logits_of(lightning_net(trained[0]), trained[2]), rtol=0, atol=0)


def test_published_folder_of_the_earlier_format_still_loads(trained, tmp_path):
    """Version 1 of config.json called the synthetic flag ``synthetic_data``."""
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((trained[1] / "config.json").read_text())
    config["musiczoo_config_version"] = 1
    config["synthetic_data"] = config.pop("synthetic")
    (old / "config.json").write_text(json.dumps(config))
    (old / "model.safetensors").write_bytes((trained[1] / "model.safetensors").read_bytes())
    model = from_pretrained(old)
    assert model.spec.provenance.synthetic is True and "synthetic_data" not in model.spec.to_config()
    assert json.loads((save_pretrained(model, tmp_path / "again") / "config.json").read_text())["synthetic"] is True


def test_checkpoint_without_provenance(trained, tmp_path, caplog):
    raw = load_checkpoint_dict(trained[0])
    del raw["datamodule_hyper_parameters"], raw["hyper_parameters"]["provenance"], raw["hyper_parameters"]["chunk_seconds"]
    torch.save(raw, tmp_path / "bare.ckpt")
    with caplog.at_level("WARNING"):
        model = load_checkpoint(tmp_path / "bare.ckpt")
    assert "records no data provenance" in caplog.text
    assert model.spec.chunk_seconds == 3.0 and model.spec.provenance.dataset is None
    out = publish(tmp_path / "bare.ckpt", tmp_path / "out", metrics={}, dataset="gtzan", chunk_seconds=1.0)
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["chunk_seconds"], config["synthetic"]) == ("gtzan", 1.0, None)
    assert "Not recorded" not in (out / "README.md").read_text()


# ---- safety --------------------------------------------------------------------------------
def test_the_payload_is_live(tmp_path):
    """Control: loading the payload the unsafe way does run code, so the tests below mean something."""
    marker = tmp_path / "pwned"
    torch.load(malicious(tmp_path / "evil.ckpt", marker), weights_only=False)
    assert marker.exists()


def test_malicious_pickle_is_never_executed(tmp_path, trained):
    marker = tmp_path / "pwned"
    ckpt = malicious(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ModelError, match="refused to load.*weights-only"):
        load_checkpoint(ckpt)
    with pytest.raises(ModelError, match="refused"):
        publish(ckpt, tmp_path / "out")
    with pytest.raises(SystemExit):
        cmd_predict([str(ckpt), str(trained[2])])
    # A folder with only a pickle (with or without a config) is refused before anything is read.
    folder = tmp_path / "pickled"
    folder.mkdir()
    malicious(folder / "pytorch_model.bin", marker)
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin.*never loaded"):
        from_pretrained(folder)
    (folder / "config.json").write_text((trained[1] / "config.json").read_text())
    with pytest.raises(UnsafeCheckpointError):
        from_pretrained(folder)
    with pytest.raises(SystemExit):
        cmd_predict([str(folder), str(trained[2])])
    assert not marker.exists()


def test_ckpt_is_loaded_weights_only(trained, monkeypatch):
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw.get("weights_only")) or real_load(*a, **kw))
    load_checkpoint(trained[0])
    assert seen == [True]


def test_from_pretrained_reads_no_pickle(trained, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **kw: pytest.fail("torch.load called by from_pretrained"))
    from_pretrained(trained[1])


def test_missing_or_broken_files_are_clear_errors(tmp_path, trained):
    with pytest.raises(ModelError, match="no model.safetensors"):
        from_pretrained(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    (broken / "config.json").write_text((trained[1] / "config.json").read_text())
    with pytest.raises(ModelError, match="not a valid safetensors"):
        from_pretrained(broken)
    (broken / "config.json").write_text("{")
    with pytest.raises(ModelError, match="invalid JSON"):
        from_pretrained(broken)
    with pytest.raises(ModelError, match="neither a folder nor"):
        from_pretrained(str(tmp_path / "no" / "such" / "folder"))


# ---- the Hub (mocked) ---------------------------------------------------------------------
def test_hub_id_resolved_with_snapshot_download(trained, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(trained[1])

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    model = from_pretrained("someone/tiny-crnn")
    assert calls == [("someone/tiny-crnn", {"allow_patterns": ["config.json", "model.safetensors", "README.md"]})]
    assert model.spec.label_names == tuple(LABELS)


def test_hub_download_failure_is_clear(monkeypatch):
    def offline(repo_id, **kwargs):
        raise OSError("cannot reach the Hub")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(ModelError, match="'someone/absent'.*could not be fetched.*local Hugging Face cache"):
        from_pretrained("someone/absent")


def test_push_to_hub_up_to_the_upload(trained, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload_folder", kw)))
    cmd_publish([str(trained[0]), str(tmp_path / "out"), "--push-to-hub", "me/tiny-crnn"])
    (_, repo_id, create_kw), (_, upload_kw) = calls
    assert repo_id == "me/tiny-crnn" and create_kw["exist_ok"] is True and create_kw["repo_type"] == "model"
    assert upload_kw["repo_id"] == "me/tiny-crnn" and Path(upload_kw["folder_path"]) == tmp_path / "out"
    assert upload_kw["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]
    assert "from_pretrained('me/tiny-crnn')" in (tmp_path / "out" / "README.md").read_text()
    # Nothing that from_pretrained would refuse is ever uploaded.
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError):
        hub.push_to_hub(tmp_path / "empty", "me/empty")
    assert len(calls) == 2


# ---- pretrained names ----------------------------------------------------------------------
def test_pretrained_names(trained, empty_pretrained):
    _, folder, wav = trained
    register_pretrained("crnn.tiny", PretrainedEntry(
        source=str(folder), sample_rate=SR, transform="mel", num_classes=3, transform_params={"n_mels": 128},
        chunk_seconds=1.0, label_names=tuple(LABELS), dataset="gtzan", split="fault_filtered"))
    assert list_pretrained() == ["crnn.tiny"] and list_pretrained("fcn.*") == []
    reference = logits_of(from_pretrained(folder), wav)
    model = create_model("crnn", num_classes=3, sample_rate=SR, pretrained="tiny", **TINY)
    assert model.spec.label_names == tuple(LABELS) and not model.training
    torch.testing.assert_close(logits_of(model, wav), reference, rtol=0, atol=0)
    torch.testing.assert_close(logits_of(from_pretrained("crnn.tiny"), wav), reference, rtol=0, atol=0)
    by_folder = create_model("crnn", num_classes=3, sample_rate=SR, pretrained=str(folder), **TINY)
    torch.testing.assert_close(logits_of(by_folder, wav), reference, rtol=0, atol=0)
    with pytest.raises(ModelError, match=r"sample_rate=16000 \(got 22050\).*transform=.mel. \(got .mfcc.\)"):
        create_model("crnn", num_classes=3, sample_rate=22050, transform="mfcc", pretrained="tiny", **TINY)
    with pytest.raises(ModelError, match="do not fit"):
        create_model("crnn", num_classes=3, sample_rate=SR, pretrained="tiny")  # default (wider) channels
    with pytest.raises(UnknownNameError, match="crnn.tiny"):
        create_model("crnn", num_classes=3, sample_rate=SR, pretrained="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_pretrained("crnn.tiny", PRETRAINED["crnn.tiny"])


def test_pretrained_entry_that_disagrees_with_its_folder(trained, empty_pretrained):
    register_pretrained("crnn.wrong", PretrainedEntry(source=str(trained[1]), sample_rate=22050, transform="mel", num_classes=3))
    with pytest.raises(ModelError, match="disagrees with the registered entry: sample_rate=22050"):
        from_pretrained("crnn.wrong")


def test_pretrained_not_yet_uploaded(monkeypatch, empty_pretrained):

    def missing(repo_id, **kwargs):
        raise OSError("404")

    monkeypatch.setattr(hub, "snapshot_download", missing)
    register_pretrained("fcn.future", PretrainedEntry(source="musiczoo/fcn-future", sample_rate=22050, transform="mel",
                                                      num_classes=10, uploaded=False))
    with pytest.raises(ModelError, match="not yet uploaded to 'musiczoo/fcn-future'"):
        create_model("fcn", pretrained="future")


# ---- every kind of MODEL for `musiczoo predict` ---------------------------------------------
def test_predict_accepts_every_model_kind(trained, monkeypatch, capsys, empty_pretrained):
    ckpt, folder, wav = trained
    monkeypatch.setattr(hub, "snapshot_download", lambda repo_id, **kw: str(folder))
    register_pretrained("crnn.tiny", PretrainedEntry(source=str(folder), sample_rate=SR, transform="mel", num_classes=3))
    reference = logits_of(lightning_net(ckpt), wav)
    for spec in (str(ckpt), str(folder), "someone/tiny-crnn", "crnn.tiny"):
        torch.testing.assert_close(logits_of(load_model(spec), wav), reference, rtol=0, atol=1e-6)
        cmd_predict([spec, str(wav), "--format", "json", "--top-k", "2"])
        (result,) = json.loads(capsys.readouterr().out)
        assert len(result["labels"]) == 2 and result["error"] is None


# ---- through the real CLI ---------------------------------------------------------------------
def test_train_with_the_cli_publish_and_predict(tmp_path, capsys, monkeypatch):
    synthetic = pytest.importorskip("datamodules.synthetic")
    from zoo.cli import main

    monkeypatch.setattr(sys, "argv", ["musiczoo"])  # pytest's own arguments are not the CLI's

    data = tmp_path / "synthetic_gtzan"
    synthetic.make_synthetic_gtzan(data, clips_per_genre=3, seconds=2.0, sample_rate=8000)
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp_path / "run")},
        "model": {"architecture": "crnn", "transform": "mel", "model_params": TINY},
        "data": {"class_path": "datamodules.gtzan.GTZANDataModule",
                 "init_args": {"root": str(data), "split": "kfold", "k": 3, "sample_rate": 8000, "chunk_seconds": 1.0,
                               "batch_size": 4, "cache_dir": str(tmp_path / "cache"), "decode_workers": 1}},
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(tmp_path / "fit.yaml")])
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("best-*.ckpt")  # the task also writes last.ckpt

    # The checkpoint records the data module's settings: chunk length, dataset, split.
    main(["publish", str(ckpt), str(tmp_path / "pub")])
    published = json.loads((tmp_path / "pub" / "config.json").read_text())
    assert published["label_names"][:2] == ["blues", "classical"] and published["sample_rate"] == 8000
    assert published["synthetic"] is True and published["chunk_seconds"] == 1.0
    assert published["dataset"] == "gtzan" and published["split"] == "kfold(k=3,fold=0,seed=0)"
    capsys.readouterr()

    clip = sorted(data.rglob("*.wav"))[0]
    main(["predict", str(tmp_path / "pub"), str(clip), "--format", "json", "--top-k", "0"])
    (result,) = json.loads(capsys.readouterr().out)
    task = MusicTask.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    audio = load_audio(clip, 8000)
    with torch.no_grad():
        expected = probabilities(task(torch.stack([audio[:8000], audio[8000:16000]])), "multiclass").mean(0)
    got = torch.tensor([result["labels"][name] for name in task.spec.label_names])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
