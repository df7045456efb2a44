"""Version identification end to end on synthetic covers, through the real CLI: a version model is
trained on clique labels, tested by retrieval over works it never heard, predicts, and finds the
other performances of a work in a library with `recommend --versions`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from datamodules.covers import CliqueTableDataModule
from datamodules.synthetic_covers import make_synthetic_covers
from zoo.cli import main
from zoo.cli.train import build_cli
from zoo.factory import from_pretrained
from zoo.problems import retrieval_scores

CONFIG = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "covers_synthetic_tiny.yaml"


def clip_embeddings(model, items) -> torch.Tensor:
    """Each item's embedding as evaluation makes it: the mean of its 4 s chunks' unit embeddings."""
    from datamodules.primitives.audio import decode_audio

    rows = []
    with torch.no_grad():
        for it in items:
            audio = torch.from_numpy(decode_audio(it.source, 16000))
            chunks = audio[: len(audio) // 64000 * 64000].reshape(-1, 64000)
            rows.append(torch.nn.functional.normalize(model.embed(chunks), dim=1).mean(0))
    return torch.stack(rows)


def test_a_version_model_trains_tests_by_retrieval_and_finds_versions_in_a_library(tmp_path, capsys):
    root = make_synthetic_covers(tmp_path / "covers", n_works=20, versions=3, seconds=8.0, sample_rate=16000, seed=0)
    cli = build_cli(["--config", str(CONFIG), f"--data.init_args.root={root}", "--data.init_args.val_fraction=0.2",
                     "--data.init_args.test_fraction=0.2", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
                     f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_progress_bar=false",
                     "--trainer.max_epochs=24", "--trainer.check_val_every_n_epoch=12", "--model.key_shift=0"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.checkpoint_callback.monitor == "val/map"
    best = cli.trainer.checkpoint_callback.best_model_path
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, weights_only=True)
    parts = cli.datamodule.split_items()
    works = {name: {it.key.split("/")[0] for it in items} for name, items in parts.items()}
    assert len(works["train"]) == 12 and len(works["test"]) == 4 and not works["train"] & works["test"]
    assert results["test/queries"] == 12 and 0 < results["test/map"] <= 1 and 1 <= results["test/mr1"] <= 11
    (table,) = (tmp_path / "run").rglob("per_work_metrics.csv")
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["work", "performances", "map"] and len(rows) == 5 and {r[1] for r in rows[1:]} == {"3"}

    # It learnt the works it trained on (48 steps, no key shift: their performances find each other
    # far above a random ranking's MAP of about 0.11), whatever it makes of new works at this size.
    model = from_pretrained(best).eval()
    spec = model.spec
    assert (spec.task, spec.transform, spec.num_classes) == ("versions", "cqt", 12)
    assert list(spec.label_names) == sorted(works["train"]) and spec.provenance.synthetic
    train = parts["train"]
    learnt = retrieval_scores(clip_embeddings(model, train), torch.tensor([it.target for it in train]))
    assert learnt["map"] > 0.3, learnt["map"]

    # predict: the probabilities of its training works, which sum to 1.
    capsys.readouterr()
    main(["predict", best, train[0].source, "--format", "json", "--top-k", "12"])
    (answer,) = json.loads(capsys.readouterr().out)
    assert set(answer["labels"]) == set(spec.label_names) and sum(answer["labels"].values()) == pytest.approx(1, abs=1e-3)

    # A library of the test works with the version model: --versions lists performances, never the query.
    main(["publish", best, str(tmp_path / "version_model")])
    test_dir = tmp_path / "test_music"
    for it in parts["test"]:
        target = test_dir / it.key.split("/")[0] / Path(it.source).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(it.source).read_bytes())
    main(["index", str(tmp_path / "version_model"), str(test_dir), "--out", str(tmp_path / "library"), "--max-chunks", "2"])
    capsys.readouterr()
    query = sorted(p.relative_to(test_dir).as_posix() for p in test_dir.rglob("*.wav"))[0]
    main(["recommend", str(tmp_path / "library"), "--versions", query, "-k", "5", "--format", "json"])
    found = json.loads(capsys.readouterr().out)["matches"]
    assert len(found) == 5 and query not in [m["id"] for m in found]
    assert all(m["labels"] == {} for m in found)  # a version model's training works are no labels of these tracks
    assert CliqueTableDataModule(str(root), val_fraction=0.2, test_fraction=0.2).split_name == cli.datamodule.split_name
