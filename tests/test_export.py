"""``musiczoo export``: every architecture as ONNX and TorchScript, checked against PyTorch on real and
synthetic audio of several lengths and batch sizes; ``predict --runtime onnx`` runs the file."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.primitives.audio import load_audio
from datamodules.primitives.chunks import probabilities
from zoo.cli.main import main
from zoo.export import EXPORT_FILES, PARITY_TOLERANCE, export_model, load_exported
from zoo.factory import create_model, list_models
from zoo.hub import save_pretrained
from zoo.predict import predict_files
from zoo.prediction_formats import PREDICTION_WRITERS
from zoo.spec import ModelSpec

onnx = pytest.importorskip("onnx", reason="the export extra (pip install -e '.[export]') is not installed")
pytest.importorskip("onnxruntime", reason="the export extra (pip install -e '.[export]') is not installed")

SR = 16000
LABELS = ["blues", "jazz", "rock"]
FRONT = {"n_fft": 512, "hop_length": 256}
#: Each architecture at a few thousand parameters, each front-end used by two of them.
TINY = {
    "resnet_gru": ("mel", {"channels": [8, 8, 16, 16], "token_dim": 32, "gru_hidden": 16}),
    "resnet_vit": ("mfcc", {"channels": [8, 8, 16, 16], "embed_dim": 32, "depth": 1, "num_heads": 2}),
    "fcn": ("stft", {"channels": [8, 8, 8, 8, 8]}),
    "crnn": ("mel", {"channels": [8, 8, 8, 8], "gru_hidden": 8}),
    "short_chunk_cnn": ("mfcc", {"channels": [8] * 7, "dense": 16}),
    "short_chunk_resnet": ("stft", {"channels": [8] * 7, "dense": 16}),
    "timm/resnet10t": ("mel", {}),
}
ARCHITECTURES = list_models() + ["timm/resnet10t"]
#: Lengths in seconds (the model's chunk is 1 s): shorter than a chunk, a chunk, and between chunks.
LENGTHS = (0.45, 1.0, 2.37)


def tiny_model(arch: str):
    transform, params = TINY[arch]
    front = {**FRONT, **({"n_mels": 48} if transform != "stft" else {}), **({"n_mfcc": 20} if transform == "mfcc" else {})}
    torch.manual_seed(0)
    model = create_model(arch, transform=transform, num_classes=3, sample_rate=SR, transform_params=front,
                         chunk_seconds=1.0, label_names=LABELS, **params).eval()
    with torch.no_grad():  # non-trivial normalisation statistics, as trained weights have
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(arch)``: (PyTorch model, {format: loaded exported file}), exported once per module."""
    done = {}

    def get(arch):
        if arch not in done:
            model = tiny_model(arch)
            folder = tmp_path_factory.mktemp(arch.replace("/", "_"))
            done[arch] = model, {fmt: load_exported(export_model(model, folder, fmt=fmt)) for fmt in EXPORT_FILES}
        return done[arch]

    return get


def sine_batches():
    """(batch, samples) tones of each length, batch sizes 1..3 (always available)."""
    for i, seconds in enumerate(LENGTHS):
        t = torch.arange(int(seconds * SR)) / SR
        yield torch.stack([0.6 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 440.0 * 1.5, 1000.0)[:i + 1]])


def assert_parity(model, runners, batch):
    with torch.inference_mode():
        embedding, logits = model.embed_and_logits(batch)
    for fmt, runner in runners.items():
        other_embedding, other_logits = runner.embed_and_logits(batch)
        assert other_logits.shape == logits.shape and other_embedding.shape == embedding.shape
        difference = (probabilities(logits, "multiclass") - probabilities(other_logits, "multiclass")).abs().max()
        assert difference < PARITY_TOLERANCE, (fmt, tuple(batch.shape), float(difference))
        assert torch.allclose(other_embedding, embedding, rtol=1e-3, atol=1e-4), (fmt, tuple(batch.shape))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_exports_with_parity_on_tones(arch, exported):
    model, runners = exported(arch)
    for batch in sine_batches():
        assert_parity(model, runners, batch)


@pytest.fixture(scope="module")
def real_music(shared_data):
    """Three real recordings (CC music clips of ../shared/data/audio), decoded once at the models' rate."""
    return [load_audio(c, SR) for c in sorted((shared_data / "audio").glob("*.ogg"))[:3]]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_exports_with_parity_on_real_music(arch, exported, real_music):
    audio = real_music
    model, runners = exported(arch)
    for seconds in LENGTHS:  # a window from the middle of each clip, all in one batch
        n = int(seconds * SR)
        batch = torch.stack([a[len(a) // 2:][:n] for a in audio])
        assert_parity(model, runners, batch)


def test_the_spec_travels_inside_and_beside_the_file(tmp_path):
    model = tiny_model("crnn")
    path = export_model(model, tmp_path / "out", fmt="onnx")
    assert path == tmp_path / "out" / "model.onnx"
    beside = json.loads((path.parent / "config.json").read_text())
    inside = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(inside["musiczoo_config"]) == beside
    assert ModelSpec.from_config(beside) == model.spec
    assert beside["export"]["inputs"] == {"audio": ["batch", "samples"]} and beside["export"]["opset"] == 17
    # the file alone is enough: with config.json gone the spec comes from inside it
    (path.parent / "config.json").unlink()
    assert load_exported(path).spec == model.spec
    assert load_exported(export_model(model, tmp_path / "m.pt", fmt="torchscript")).spec == model.spec


def write_music(tmp_path, shared_data=None):
    """A folder of a tone (2.5 s, 44.1 kHz stereo: resampled and mixed down) and, where present, real clips."""
    folder = tmp_path / "music"
    folder.mkdir()
    t = np.arange(int(2.5 * 44100)) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    sf.write(folder / "tone.wav", np.stack([tone, 0.5 * tone], axis=1), 44100)
    (folder / "broken.wav").write_bytes(b"not audio")
    return [folder] + (sorted((shared_data / "audio").glob("*.ogg"))[:2] if shared_data else [])


@pytest.fixture()
def real_or_none(request):
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None


def test_predict_files_with_the_onnx_runtime_is_predict_files(exported, tmp_path, real_or_none):
    model, runners = exported("resnet_gru")
    paths = write_music(tmp_path, real_or_none)
    kwargs = {"top_k": 0, "segments": True, "embeddings": True, "batch_size": 3, "max_chunks": 4, "progress": False,
              "device": "cpu"}
    ours = list(predict_files(model, paths, **kwargs))
    onnx_file = runners["onnx"].path
    theirs = list(predict_files(load_exported(onnx_file.parent), paths, runtime="onnx", **kwargs))
    assert [r.path for r in theirs] == [r.path for r in ours] and len(ours) >= 2
    for a, b in zip(ours, theirs):
        assert (a.error is None) == (b.error is None) and a.duration_s == b.duration_s
        if a.error:
            continue
        assert a.labels.keys() == b.labels.keys()
        assert max(abs(a.labels[k] - b.labels[k]) for k in a.labels) < PARITY_TOLERANCE
        assert [s[:2] for s in a.segments] == [s[:2] for s in b.segments]
        assert np.allclose(a.embedding, b.embedding, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="runs a loaded exported model: zoo.predict_files.zoo.load_exported"):
        next(predict_files(onnx_file, paths, runtime="onnx"))
    with pytest.raises(ValueError, match="runtime='onnx', but the model is a torch model"):
        next(predict_files(model, paths, runtime="onnx"))


def test_cli_export_then_predict_with_the_onnx_runtime(tmp_path, capsys):
    model = tiny_model("resnet_vit")
    folder = save_pretrained(model, tmp_path / "pub")
    music = write_music(tmp_path)[0] / "tone.wav"
    main(["export", str(folder), str(tmp_path / "deploy")])
    assert "exported" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["config.json", "model.onnx"]
    main(["predict", str(folder), str(music), "--format", "json", "--device", "cpu"])
    ours = json.loads(capsys.readouterr().out)
    main(["predict", "--runtime", "onnx", str(tmp_path / "deploy" / "model.onnx"), str(music), "--format", "json"])
    theirs = json.loads(capsys.readouterr().out)
    assert ours[0]["labels"].keys() == theirs[0]["labels"].keys()
    assert all(abs(ours[0]["labels"][k] - theirs[0]["labels"][k]) < PARITY_TOLERANCE for k in ours[0]["labels"])
    assert set(PREDICTION_WRITERS) == {"table", "json", "csv"}  # every format goes through the same writers


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    err = err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "graph" not in out
    return err


def test_what_cannot_be_exported_is_one_line_and_writes_nothing(tmp_path, capsys):
    folder = save_pretrained(tiny_model("crnn"), tmp_path / "pub")
    err = one_line_error(capsys, ["export", str(folder), str(tmp_path / "old"), "--opset", "12"])
    assert err.startswith("musiczoo export: error: crnn: cannot be exported to ONNX (opset 12): ")
    assert not (tmp_path / "old").exists()
    main(["export", str(folder), str(tmp_path / "ok")])
    capsys.readouterr()
    err = one_line_error(capsys, ["export", str(folder), str(tmp_path / "ok")])
    assert "model.onnx exists" in err and "--force" in err
    err = one_line_error(capsys, ["predict", "--runtime", "onnx", str(tmp_path / "pub"), str(tmp_path)])
    assert "no model.onnx or model.pt" in err
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    assert "not a usable ONNX model" in one_line_error(capsys, ["predict", "--runtime", "onnx", str(tmp_path / "bad.onnx"),
                                                                str(tmp_path)])
    with pytest.raises(ValueError, match="a torchscript export is a .pt file"):
        export_model(tiny_model("crnn"), tmp_path / "x.onnx", fmt="torchscript")


def test_without_the_export_extra_one_line_names_it(tmp_path, capsys, monkeypatch):
    folder = save_pretrained(tiny_model("crnn"), tmp_path / "pub")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like to import
    err = one_line_error(capsys, ["export", str(folder), str(tmp_path / "out")])
    assert "onnxruntime is not installed" in err and "musiczoo[export]" in err
    assert not (tmp_path / "out").exists()


def test_index_with_an_exported_file_is_the_library_of_its_pytorch_model(tmp_path, capsys):
    """``musiczoo index --runtime onnx``: the library keeps the exported file as its model, its vectors are
    the PyTorch model's, audio queries run the file, and a re-run with the same file embeds nothing."""
    from datamodules.synthetic import make_synthetic_gtzan
    from zoo.recommend.library import Library

    model = tiny_model("resnet_gru")
    folder = save_pretrained(model, tmp_path / "pub")
    main(["export", str(folder), str(tmp_path / "deploy")])
    music = make_synthetic_gtzan(tmp_path / "music", seconds=2.0, sample_rate=SR, clips_per_genre=2)
    index = ["--out", str(tmp_path / "lib-onnx"), "--max-chunks", "3"]
    main(["index", str(folder), str(music), "--out", str(tmp_path / "lib-torch"), "--max-chunks", "3"])
    main(["index", "--runtime", "onnx", str(tmp_path / "deploy"), str(music), *index])
    ours, theirs = Library.open(tmp_path / "lib-torch"), Library.open(tmp_path / "lib-onnx")
    assert [t.id for t in theirs.tracks] == [t.id for t in ours.tracks] and len(ours.tracks) == 20
    assert [e["runtime"] for e in (ours.model_entries[0], theirs.model_entries[0])] == ["torch", "onnx"]
    assert (theirs.root / "models" / "0" / "model.onnx").is_file() and theirs.specs() == ours.specs()
    for feature in ("embedding", "probabilities"):
        assert np.abs(theirs.vectors(feature) - ours.vectors(feature)).max() < 1e-4
    query = music / "jazz" / "jazz.00001.wav"
    (labels, matches), (their_labels, their_matches) = ours.similar_to_audio(query, k=5), theirs.similar_to_audio(query, k=5)
    assert [m.id for m in their_matches] == [m.id for m in matches] and their_labels.keys() == labels.keys()
    assert type(theirs.models()[0]).__name__ == "ExportedModel"
    capsys.readouterr()
    main(["index", "--runtime", "onnx", str(tmp_path / "deploy"), str(music), *index])
    assert "(0 embedded, 20 unchanged" in capsys.readouterr().out
    # The PyTorch model is another model to this library: refused, naming what differs.
    with pytest.raises(SystemExit):
        main(["index", str(folder), str(music), *index])
    assert "was built with other models or settings: model 0: model_digest" in capsys.readouterr().err
