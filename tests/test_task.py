"""MusicTask: losses, clip-level evaluation, metrics against scikit-learn, a real Trainer."""

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch.utils.data import DataLoader

from zoo.problems import MacroTagMetrics, RegressionMetrics, regression_scores
from zoo.task import MusicTask

SR = 8000


def test_tag_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, size=(200, 6))
    preds = np.clip(target * 0.3 + rng.random((200, 6)), 0, 1).astype(np.float32)
    metric = MacroTagMetrics(6)
    for part in np.array_split(np.arange(200), 4):  # accumulated over batches
        metric.update(torch.from_numpy(preds[part]), torch.from_numpy(target[part]))
    out = metric.compute()
    assert out["roc_auc"].item() == pytest.approx(roc_auc_score(target, preds, average="macro"), abs=1e-5)
    assert out["pr_auc"].item() == pytest.approx(average_precision_score(target, preds, average="macro"), abs=1e-5)
    per_tag = [roc_auc_score(target[:, k], preds[:, k]) for k in range(6)]
    assert np.allclose(out["per_tag_roc_auc"].numpy(), per_tag, atol=1e-5)


def test_tag_metrics_skip_tags_with_one_class():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, size=(50, 4))
    target[:, 1] = 0  # never present
    target[:, 3] = 1  # always present
    preds = rng.random((50, 4)).astype(np.float32)
    metric = MacroTagMetrics(4)
    metric.update(torch.from_numpy(preds), torch.from_numpy(target))
    out = metric.compute()
    defined = [0, 2]
    assert torch.isnan(out["per_tag_roc_auc"][[1, 3]]).all()
    assert out["roc_auc"].item() == pytest.approx(roc_auc_score(target[:, defined], preds[:, defined], average="macro"), abs=1e-5)


def test_regression_metrics_match_hand_computed_values_sklearn_and_numpy():
    from sklearn.metrics import r2_score

    # By hand: target 1 2 3 4, prediction 2 3 4 5 (shifted by one): SS_res 4, SS_tot 5, so R² = 0.2;
    # r = 1; population variances 1.25 each, covariance 1.25, so CCC = 2.5 / (2.5 + 1) = 5/7.
    metric = RegressionMetrics(["valence", "arousal"])
    target = torch.tensor([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]])
    metric.update(target + 1, target)
    out = metric.compute()
    assert out["r2_valence"].item() == pytest.approx(0.2) and out["pearson_valence"].item() == pytest.approx(1.0)
    assert out["ccc_valence"].item() == pytest.approx(5 / 7)
    assert out["r2"].item() == pytest.approx(0.2)  # both targets shifted by one alike

    rng = np.random.default_rng(0)
    target = rng.uniform(1, 9, size=(120, 2))
    preds = 0.6 * target + rng.normal(2, 1, size=(120, 2))
    metric = RegressionMetrics(["valence", "arousal"])
    for part in np.array_split(np.arange(120), 5):  # accumulated over batches
        metric.update(torch.from_numpy(preds[part]), torch.from_numpy(target[part]))
    out = metric.compute()
    for k, name in enumerate(["valence", "arousal"]):
        p, t = preds[:, k], target[:, k]
        ccc = 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
        assert out[f"r2_{name}"].item() == pytest.approx(r2_score(t, p), abs=1e-5)
        assert out[f"pearson_{name}"].item() == pytest.approx(np.corrcoef(p, t)[0, 1], abs=1e-5)
        assert out[f"ccc_{name}"].item() == pytest.approx(ccc, abs=1e-5)
    assert out["r2"].item() == pytest.approx(r2_score(target, preds), abs=1e-5)  # uniform average over targets


@pytest.mark.parametrize("kind", ["mse", "huber", "ccc"])
def test_the_regression_loss_is_the_one_chosen(kind):
    module = MusicTask(architecture="fcn", num_classes=2, task="regression", sample_rate=SR, regression_loss=kind,
                       label_names=["valence", "arousal"])  # no target_scale: the outputs are the values
    preds, target = torch.tensor([[1.0, 2.0], [3.0, 7.0], [5.0, 5.0]]), torch.tensor([[2.0, 2.0], [3.0, 4.0], [6.0, 6.5]])
    expected = {"mse": torch.nn.functional.mse_loss(preds, target), "huber": torch.nn.functional.huber_loss(preds, target),
                "ccc": 1 - regression_scores(preds, target)["ccc"].mean()}[kind]
    assert module.loss(preds, target).item() == pytest.approx(expected.item(), abs=1e-6)
    if kind == "ccc":  # perfect agreement costs nothing; a constant shift does
        assert module.loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
        assert module.loss(target + 1, target).item() > 0.1


class RandomClips(torch.utils.data.Dataset):
    """Tiny random data in the data modules' batch format; class k has a tone at 400*(k+1) Hz."""

    def __init__(self, n, num_classes, task, chunks=0):
        g = torch.Generator().manual_seed(n)
        self.items = []
        t = torch.arange(SR) / SR
        for i in range(n):
            k = i % num_classes
            audio = torch.sin(2 * torch.pi * 400 * (k + 1) * t) + 0.1 * torch.randn(SR, generator=g)
            if task == "multiclass":
                target = torch.tensor(k)
            elif task == "regression":  # the tone's pitch and its loudness, on a 1-9 scale
                audio = audio * (0.2 + 0.6 * (i % 2))
                target = torch.tensor([1.0 + 8 * k / (num_classes - 1), 1.0 + 8 * (i % 2)])
            else:
                target = torch.zeros(num_classes)
                target[k] = 1
                target[(k + 1) % num_classes] = float(i % 2)
            self.items.append((audio.repeat(chunks) if chunks else audio, target))
        self.chunks = chunks

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def collate(self, rows):
        target = torch.stack([t for _, t in rows])
        if not self.chunks:
            return {"audio": torch.stack([a for a, _ in rows]), "target": target}
        audio = torch.cat([a.view(self.chunks, SR) for a, _ in rows])
        clip = torch.arange(len(rows)).repeat_interleave(self.chunks)
        return {"audio": audio, "target": target, "clip": clip, "key": [f"clip{i}" for i in range(len(rows))]}


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
def test_fit_and_test_with_a_real_trainer(task, tmp_path):
    torch.manual_seed(0)
    n_classes = 3
    train = RandomClips(24, n_classes, task)
    val = RandomClips(9, n_classes, task, chunks=2)
    names = ["pitch", "loudness"] if task == "regression" else ["a", "b", "c"]
    module = MusicTask(architecture="crnn", transform="mel", num_classes=len(names), task=task, sample_rate=SR,
                       transform_params={"n_fft": 512, "hop_length": 256, "n_mels": 64}, lr=3e-3,
                       label_names=names, spec_augment=True, freq_mask=4, time_mask=4,
                       target_scale=(1.0, 9.0) if task == "regression" else None)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", default_root_dir=tmp_path, logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, DataLoader(train, batch_size=8, shuffle=True, collate_fn=train.collate),
                DataLoader(val, batch_size=4, collate_fn=val.collate))
    (results,) = trainer.test(module, DataLoader(val, batch_size=4, collate_fn=val.collate))
    if task == "multiclass":
        assert results["test/acc"] > 0.5  # pure tones: far above chance (1/3)
        table = (tmp_path / "lightning_logs" / "version_0" / "confusion_matrix.csv").read_text().splitlines()
        assert table[0] == "true \\ predicted,a,b,c" and len(table) == 4
        assert sum(int(v) for row in table[1:] for v in row.split(",")[1:]) == len(val)
    elif task == "regression":
        assert module.monitor == "val/r2"
        assert results["test/r2"] == pytest.approx((results["test/r2_pitch"] + results["test/r2_loudness"]) / 2, abs=1e-6)
        assert results["test/r2"] > 0.3, results  # far better than predicting the mean (0)
        table = (tmp_path / "lightning_logs" / "version_0" / "per_target_metrics.csv").read_text().splitlines()
        assert table[0] == "target,r2,pearson,ccc" and [r.split(",")[0] for r in table[1:]] == names
        assert float(table[1].split(",")[1]) == pytest.approx(results["test/r2_pitch"], abs=1e-4)
    else:
        assert 0.0 <= results["test/pr_auc"] <= 1.0 and results["test/roc_auc"] > 0.5
        table = (tmp_path / "lightning_logs" / "version_0" / "per_tag_metrics.csv").read_text().splitlines()
        assert table[0] == "tag,roc_auc,pr_auc" and [r.split(",")[0] for r in table[1:]] == ["a", "b", "c"]


def test_checkpoint_rebuilds_the_model(tmp_path):
    module = MusicTask(architecture="fcn", transform="stft", num_classes=4, sample_rate=SR, transform_params={"n_fft": 256})
    trainer = L.Trainer(max_steps=1, accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    data = RandomClips(8, 4, "multiclass")
    trainer.fit(module, DataLoader(data, batch_size=4, collate_fn=data.collate))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = MusicTask.load_from_checkpoint(path, weights_only=True).eval()
    x = torch.randn(2, SR)
    with torch.no_grad():
        assert torch.allclose(loaded(x), module.eval()(x), atol=1e-5)
    assert loaded.net.frontend.n_bins == 129


@pytest.mark.parametrize("architecture, expected", [("fcn", True), ("short_chunk_resnet", False)])
def test_a_cpu_fit_trains_the_convolutions_in_channels_last_where_that_is_faster(architecture, expected, tmp_path):
    """``MusicTask.on_fit_start``: every 4-d weight in channels_last after a CPU fit, except for the
    architecture that opts out; a checkpoint of such a run gives the same outputs in the default layout."""
    params = {"channels": [8] * 7, "dense": 16} if architecture == "short_chunk_resnet" else {"channels": [8] * 5}
    module = MusicTask(architecture=architecture, transform="mel", num_classes=4, sample_rate=SR,
                       transform_params={"n_fft": 256, "n_mels": 48}, model_params=params)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    data = RandomClips(8, 4, "multiclass")
    trainer.fit(module, DataLoader(data, batch_size=4, collate_fn=data.collate))
    convolutions = [p for p in module.net.parameters() if p.dim() == 4]
    if expected:  # (a 1x1 kernel is contiguous in both layouts, so the 3x3 ones tell them apart)
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
        assert not all(p.is_contiguous() for p in convolutions)
    else:
        assert convolutions and all(p.is_contiguous() for p in convolutions)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = MusicTask.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True).eval()
    assert all(p.is_contiguous() for p in loaded.net.parameters())
    x = torch.randn(2, SR)
    with torch.no_grad():
        assert torch.allclose(loaded(x), module.eval()(x), atol=1e-5)


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="multiclass, multilabel, regression"):
        MusicTask(task="ranking")
    with pytest.raises(ValueError, match="2 label names for 10 classes"):
        MusicTask(label_names=["a", "b"])


def test_the_trained_net_carries_the_runs_spec(tmp_path):
    """The net predicts with the chunk length it is trained on, not a default, and names its outputs."""
    import soundfile as sf

    from zoo.predict import predict_files

    module = MusicTask(architecture="crnn", transform="mel", num_classes=3, sample_rate=SR, chunk_seconds=1.5,
                       label_names=["a", "b", "c"], provenance={"dataset": "gtzan", "split": "fault_filtered",
                                                                 "synthetic": True},
                       model_params={"channels": [8, 8, 8, 8]})
    spec = module.net.spec
    assert (spec.chunk_seconds, spec.label_names, spec.sample_rate) == (1.5, ("a", "b", "c"), SR)
    assert (spec.provenance.dataset, spec.provenance.split, spec.provenance.synthetic) == ("gtzan", "fault_filtered", True)
    assert spec.transform_params == module.net.frontend.config()  # every front-end setting, defaults included
    path = tmp_path / "three_seconds.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 3 * SR).astype(np.float32), SR)
    (result,) = predict_files(module.net, [path], top_k=0, segments=True, progress=False)
    assert [(s, e) for s, e, _ in result.segments] == [(0.0, 1.5), (1.5, 3.0)]
    assert sorted(result.labels) == ["a", "b", "c"]
