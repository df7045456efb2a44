"""Transfer learning through the real CLI: ``--model.init_from``, ``--model.freeze``, ``--model.encoder_lr_scale``,
the provenance they leave, and bench grids of scratch / fine-tune / probe cells."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from conftest import TINY_CONFIG
from zoo.card import model_card
from zoo.checkpoint import checkpoint_spec, load_checkpoint_dict, publish
from zoo.cli import main
from zoo.cli.train import build_cli
from zoo.spec import ModelError, ModelSpec, Provenance
from zoo.transfer import encoder_parameters, head_parameters

IS_HEAD = lambda key: key.split(".", 1)[0] in ("dropout", "head")  # noqa: E731 (the split, restated as the oracle)


def write_config(path, root, cache, run, data=None, model=None, **trainer):
    cfg = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    cfg["trainer"].update(default_root_dir=str(run), **trainer)
    cfg["data"]["init_args"].update(root=str(root), sample_rate=8000, cache_dir=str(cache))
    if data:
        cfg["data"] = data
    cfg["model"] = cfg["model"] if model is None else model
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory, gtzan_rerelease):
    """A tiny CRNN trained on the synthetic GTZAN through ``musiczoo fit``: its checkpoint and its published folder."""
    tmp = tmp_path_factory.mktemp("source")
    main(["fit", "--config", str(write_config(tmp / "source.yaml", gtzan_rerelease, tmp / "cache", tmp / "run"))])
    ckpt = tmp / "run" / "checkpoints" / "best-epoch000.ckpt"
    folder = publish(ckpt, tmp / "published")
    state = {k[len("net."):]: v for k, v in load_checkpoint_dict(ckpt)["state_dict"].items() if k.startswith("net.")}
    return {"checkpoint": ckpt, "folder": folder, "state": state, "cache": tmp / "cache"}


@pytest.fixture(scope="module")
def two_styles(tmp_path_factory, gtzan_rerelease):
    """A folder dataset with other labels: blues and metal clips relabelled ``slow`` and ``loud``."""
    root = tmp_path_factory.mktemp("styles")
    for label, genre in (("slow", "blues"), ("loud", "metal")):
        (root / label).mkdir()
        for n in range(20):
            shutil.copy(gtzan_rerelease / "genres_original" / genre / f"{genre}.{n:05d}.wav", root / label)
    return {"class_path": "datamodules.folder.FolderDataModule",
            "init_args": {"root": str(root), "labels": ["slow", "loud"], "val_fraction": 0.2, "test_fraction": 0.2,
                          "chunk_seconds": 0.5, "batch_size": 8, "sample_rate": 8000}}


def unset_model() -> dict:
    """A model section that leaves architecture and front-end to the source."""
    return {}


@pytest.mark.parametrize("kind", ["checkpoint", "folder"])
def test_each_source_kind_gives_its_encoder_and_head_for_the_same_labels(kind, source, gtzan_rerelease, tmp_path,
                                                                         capsys):
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, source["cache"], tmp_path / "run", model=unset_model())
    cli = build_cli(["--config", str(config), f"--model.init_from={source[kind]}"], run=False)
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"init_from {source[kind]}: encoder and head loaded (the same 10 labels)")
    spec = cli.model.spec
    assert (spec.architecture, spec.transform, spec.sample_rate) == ("crnn", "mel", 8000)
    assert spec.transform_params["n_mels"] == 48 and spec.provenance.init_from == str(source[kind])
    state = cli.model.net.state_dict()
    assert state.keys() == source["state"].keys()
    assert all(torch.equal(state[k], v) for k, v in source["state"].items())


def test_other_labels_keep_the_encoder_and_start_a_new_head(source, two_styles, gtzan_rerelease, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, source["cache"], tmp_path / "run",
                          data=two_styles, model=unset_model())
    cli = build_cli(["--config", str(config), f"--model.init_from={source['folder']}"], run=False)
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"init_from {source['folder']}: encoder loaded, head re-initialised (the source's 10 multiclass labels "
        "(blues, classical, country, disco, ...) are not the data's 2 multiclass labels (slow, loud))")
    state = cli.model.net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source["state"].items() if not IS_HEAD(k))
    assert state["head.weight"].shape == (2, source["state"]["head.weight"].shape[1])


@pytest.mark.parametrize("flag,message", [
    ("--model.architecture=fcn", "model.architecture is 'fcn', the source's is 'crnn' (leave it unset to take the "
                                 "source's)"),
    ("--data.init_args.sample_rate=16000", "the data's sample_rate (data.init_args.sample_rate) is 16000, the "
                                           "source's is 8000 (set --data.init_args.sample_rate=8000)"),
    ('--model.transform_params={"n_mels": 64}', "model.transform_params.n_mels is 64, the source's is 48"),
    ("--model.transform=stft", "model.transform is 'stft', the source's is 'mel'"),
])
def test_a_config_that_contradicts_the_source_is_one_line_naming_both_values(flag, message, source, gtzan_rerelease,
                                                                             tmp_path, capfd):
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, source["cache"], tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), f"--model.init_from={source['checkpoint']}", flag])
    err = capfd.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"musiczoo fit: error: --model.init_from {source['checkpoint']}: {message}")
    assert not (tmp_path / "run").exists()  # refused before anything trained


def test_a_probe_changes_only_the_head_and_says_so_everywhere(source, two_styles, gtzan_rerelease, tmp_path, capsys):
    """A real Lightning fit through the CLI: every encoder tensor, BatchNorm statistics included, is
    bit-identical to the source's afterwards; the head moved; the checkpoint, config.json and card say "probe"."""
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, source["cache"], tmp_path / "run",
                          data=two_styles, model=unset_model())
    main(["fit", "--config", str(config), f"--model.init_from={source['folder']}", "--model.freeze=encoder"])
    assert "; encoder frozen (linear probe)" in capsys.readouterr().out
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint_dict(ckpt)
    state = {k[len("net."):]: v for k, v in saved["state_dict"].items() if k.startswith("net.")}
    encoder = [k for k in state if not IS_HEAD(k)]
    assert any("running_mean" in k for k in encoder) and any("num_batches_tracked" in k for k in encoder)
    changed = [k for k in encoder if not torch.equal(state[k], source["state"][k])]
    assert changed == []
    assert saved["global_step"] > 0 and not torch.equal(state["head.weight"], saved_head_at_start(config, source))
    spec = checkpoint_spec(saved, ckpt)
    assert (spec.provenance.init_from, spec.provenance.freeze) == (str(source["folder"]), "encoder")
    published = publish(ckpt, tmp_path / "published")
    config_json = json.loads((published / "config.json").read_text())
    assert (config_json["init_from"], config_json["freeze"]) == (str(source["folder"]), "encoder")
    assert f"Linear probe on `{source['folder']}`" in (published / "README.md").read_text()


def saved_head_at_start(config, source) -> torch.Tensor:
    """The head a run from ``config`` starts with (seeded), to show that training moved it."""
    cli = build_cli(["--config", str(config), f"--model.init_from={source['folder']}"], run=False)
    return cli.model.net.state_dict()["head.weight"]


def test_encoder_lr_scale_sets_the_encoders_param_groups(source, gtzan_rerelease, tmp_path):
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, source["cache"], tmp_path / "run",
                          model=unset_model(), max_steps=1)
    cli = build_cli(["--config", str(config), f"--model.init_from={source['checkpoint']}",
                     "--model.encoder_lr_scale=0.1", "--model.lr=0.002"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    groups = cli.trainer.optimizers[0].param_groups
    net = cli.model.net
    by_lr = {}
    for group in groups:
        by_lr.setdefault(round(group["initial_lr"], 12), set()).update(id(p) for p in group["params"])
    assert by_lr == {0.0002: {id(p) for p in encoder_parameters(net)}, 0.002: {id(p) for p in head_parameters(net)}}
    assert {id(p) for p in head_parameters(net)} == {id(net.head.weight), id(net.head.bias)}
    assert len(encoder_parameters(net)) + 2 == len(list(net.parameters()))


def test_provenance_round_trips_and_the_card_names_the_source():
    spec = ModelSpec("crnn", num_classes=2, label_names=("a", "b"),
                     provenance=Provenance(dataset="folder", init_from="crnn.gtzan", freeze="encoder"))
    again = ModelSpec.from_config(spec.to_config())
    assert again == spec and again.provenance.init_from == "crnn.gtzan"
    record = {"num_parameters": 1, "versions": {}}
    assert "Linear probe on `crnn.gtzan`: the encoder is that model's, frozen" in model_card(spec, record, "x")
    tuned = spec.replace(freeze=None)
    assert "Fine-tuned from `crnn.gtzan`" in model_card(tuned, record, "x")
    assert "Fine-tuned" not in model_card(spec.replace(init_from=None, freeze=None), record, "x")
    with pytest.raises(ModelError, match=r"^config.json: freeze must be null or one of encoder, got 'body'$"):
        ModelSpec.from_config({**spec.to_config(), "freeze": "body"})


def test_freeze_without_a_source_is_refused(gtzan_rerelease, tmp_path, capfd):
    config = write_config(tmp_path / "c.yaml", gtzan_rerelease, tmp_path / "cache", tmp_path / "run")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--model.freeze=encoder"])
    assert capfd.readouterr().err.strip().splitlines() == [
        "musiczoo fit: error: --model.freeze encoder needs --model.init_from SOURCE: a linear probe trains a head on "
        "a trained encoder"]


def test_a_grid_of_scratch_and_probe_cells_is_checked_run_and_labelled(source, two_styles, gtzan_rerelease, tmp_path):
    from benchmarks.grid import run_grid
    from benchmarks.grid_file import GridError, load_grid
    from benchmarks.leaderboard import read_results, render

    data_config = tmp_path / "styles.yaml"
    data_config.write_text(yaml.safe_dump({"data": {"class_path": two_styles["class_path"]}}))
    init_args = {f"data.init_args.{k}": v for k, v in two_styles["init_args"].items() if k != "root"}
    grid = {"results": str(tmp_path / "results.jsonl"), "out": str(tmp_path / "runs"),
            "architectures": ["crnn", {"name": "crnn", "init_from": str(source["folder"]), "freeze": "encoder"}],
            "transforms": {"mel": {"n_fft": 256, "hop_length": 128, "n_mels": 48}}, "seeds": [0],
            "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2,
                        "limit_val_batches": 1, "limit_test_batches": 1, "enable_progress_bar": False},
            "datasets": {"styles": {"config": str(data_config), "root": two_styles["init_args"]["root"],
                                    "overrides": {**init_args, "data.init_args.cache_dir": str(source["cache"])}}}}
    path = tmp_path / "grid.yaml"
    for bad, message in [({"freeze": "encoder"}, "'architectures[1].freeze' needs an init_from"),
                         ({"freeze": "head"}, "'architectures[1].freeze' must be one of encoder or null, not 'head'"),
                         ({"init_from": 3}, "'architectures[1].init_from' must be a model"),
                         ({"init_from": str(tmp_path / "gone.ckpt")}, "architectures[1].init_from: no such checkpoint"),
                         ({"epochs": 3}, "architectures[1]: an entry is a name or a mapping with 'name'")]:
        entry = {"name": "crnn", **bad}
        path.write_text(yaml.safe_dump({**grid, "architectures": ["crnn", entry]}))
        with pytest.raises(GridError, match=f"^{path}: " + message.replace("[", r"\[").replace("]", r"\]")
                           .replace("(", r"\(").replace(")", r"\)")):
            load_grid(path)
    path.write_text(yaml.safe_dump(grid))
    loaded = load_grid(path)
    assert [c.name for c in loaded.cells] == ["styles/crnn-mel-seed0", "styles/crnn-probe-mel-seed0"]
    assert f"--model.init_from={source['folder']}" in loaded.cells[1].args
    loaded.cells = loaded.cells[1:]  # one tiny cell: the probe
    assert run_grid(loaded)["ok"] == 1
    (record,) = read_results([tmp_path / "results.jsonl"])
    assert (record["init_from"], record["freeze"]) == (str(source["folder"]), "encoder")
    assert "| crnn (probe of published) |" in render([record], tmp_path / "figures", tmp_path, "musiczoo leaderboard")
