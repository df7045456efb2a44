"""The four problem types a zoo model is trained for, one class each: what the task needs to know
of its ``spec.task`` (the loss, what a chunk contributes to its clip's prediction, the clip-level
metrics, the metric that picks the best checkpoint and the table written at test time), so that
:class:`~zoo.task.MusicTask` has no branch on it.

- ``multiclass`` (genres): cross-entropy; accuracy, macro F1 and the confusion matrix.
- ``multilabel`` (tags): binary cross-entropy; macro ROC-AUC and PR-AUC over the tags.
- ``regression`` (valence and arousal, any continuous targets): MSE, Huber or 1 - CCC; per target
  and averaged, R², Pearson's r and the concordance correlation coefficient (Lin 1989), the
  figures the music emotion recognition literature reports (MediaEval's Emotion in Music task,
  DEAM, PMEmo).
- ``versions`` (version identification, "cover song" recognition): cross-entropy over the
  training works plus a batch-hard triplet term on the embedding (CQTNet, ByteCover); evaluated
  as retrieval over works the model never saw: each clip's embedding queries all the others, and
  mean average precision, the mean rank of the first other performance of its work (MR1) and
  precision at 10 are the figures of the Da-TACOS benchmark (Yesiler et al. 2019).

Metrics are computed on clip-level predictions: the chunk outputs after
:func:`~datamodules.primitives.chunks.probabilities` (for ``versions``, the unit chunk
embeddings), averaged over each clip's chunks.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from torchmetrics.utilities import dim_zero_cat

from datamodules.primitives.chunks import probabilities

RegressionLoss = Literal["mse", "huber", "ccc"]


class EpochMetric(Metric):
    """Keeps every clip prediction and target of an epoch; ``compute`` sees them all at once
    (AUCs and correlations are not averages of per-batch values). Gathered across DDP ranks."""

    full_state_update = False

    def __init__(self, num_outputs: int):
        super().__init__()
        self.num_outputs = num_outputs
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor):
        self.preds.append(preds.float())
        self.target.append(target.float())

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.preds), dim_zero_cat(self.target)


class MacroTagMetrics(EpochMetric):
    """Macro ROC-AUC and PR-AUC over tags, computed on all clip predictions of an epoch.

    A tag whose targets are all 0 or all 1 in the evaluated set has no defined AUC; it is
    left out of the macro average (and reported as NaN per tag) instead of crashing or
    silently counting as 0, which is what a small validation split or a rare tag needs.
    """

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target = self.gathered()
        target = target.long()
        roc = torch.full((self.num_outputs,), float("nan"), device=preds.device)
        pr = roc.clone()
        for k in range(self.num_outputs):
            positives = int(target[:, k].sum())
            if 0 < positives < len(target):
                roc[k] = binary_auroc(preds[:, k], target[:, k])
                pr[k] = binary_average_precision(preds[:, k], target[:, k])
        defined = ~roc.isnan()
        nan = torch.tensor(float("nan"), device=preds.device)
        return {
            "roc_auc": roc[defined].mean() if defined.any() else nan,
            "pr_auc": pr[defined].mean() if defined.any() else nan,
            "per_tag_roc_auc": roc,
            "per_tag_pr_auc": pr,
        }


def regression_scores(preds: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-column R², Pearson's r and CCC of ``preds`` against ``target`` (both (N, D)), in float64.

    R² = 1 - SS_res / SS_tot (scikit-learn's ``r2_score``: 0 for predicting the mean, negative
    for worse); r = cov / (sd_p sd_t); CCC = 2 cov / (var_p + var_t + (mean_p - mean_t)²) with
    population (1/N) moments, so it is r shrunk by any shift or scale error. A column whose
    targets are constant has no defined R² or r: NaN.
    """
    p, t = preds.double(), target.double()
    dp, dt = p - p.mean(0), t - t.mean(0)
    var_p, var_t, cov = (dp * dp).mean(0), (dt * dt).mean(0), (dp * dt).mean(0)
    r2 = 1 - ((t - p) ** 2).sum(0) / (dt * dt).sum(0)
    pearson = cov / (var_p * var_t).sqrt()
    ccc = 2 * cov / (var_p + var_t + (p.mean(0) - t.mean(0)) ** 2)
    return {"r2": r2, "pearson": pearson, "ccc": ccc}


class RegressionMetrics(EpochMetric):
    """R², Pearson's r and CCC per target (``r2_valence``, ...) and their means over targets (``r2``, ...)."""

    def __init__(self, target_names: list[str]):
        super().__init__(len(target_names))
        self.target_names = list(target_names)

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target = self.gathered()
        scores = regression_scores(preds, target)
        values = {}
        for name, per_target in scores.items():
            values[name] = per_target.mean().float()
            values.update({f"{name}_{t}": v.float() for t, v in zip(self.target_names, per_target)})
        values["per_target"] = torch.stack([scores[k] for k in ("r2", "pearson", "ccc")], 1).float()
        return values


def ccc_loss(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CCC of the batch, averaged over targets: trains for agreement, not only for error size."""
    return 1 - regression_scores(preds, target)["ccc"].mean().float()


class Problem:
    """What a problem type decides for the task. ``monitor`` picks the best checkpoint (higher is better)."""

    monitor: str
    table_name: str

    def loss(self, logits: torch.Tensor, target: torch.Tensor, task, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of ``logits`` (B, C) and the ``embedding`` (B, D) they came from against
        ``target``; ``task`` is the :class:`~zoo.task.MusicTask` (its ``hparams`` and ``spec``)."""
        raise NotImplementedError

    def chunk_values(self, logits: torch.Tensor, embedding: torch.Tensor, spec) -> torch.Tensor:
        """What a chunk contributes to its clip's prediction (averaged over the clip's chunks)."""
        return probabilities(logits.float(), spec.task, spec.target_scale)

    def metrics(self, spec) -> torch.nn.Module:
        raise NotImplementedError

    def table(self, values: dict, names: list[str]) -> list[list]:
        """The test-time CSV's rows (header first)."""
        raise NotImplementedError


class Classification(Problem):
    monitor, table_name = "val/acc", "confusion_matrix.csv"

    def loss(self, logits, target, task, embedding=None):
        return F.cross_entropy(logits, target, label_smoothing=task.hparams.get("label_smoothing", 0.0))

    def metrics(self, spec):
        n = spec.num_classes
        return MetricCollection({"acc": MulticlassAccuracy(n, average="micro"),
                                 "f1_macro": MulticlassF1Score(n, average="macro"),
                                 "confusion": MulticlassConfusionMatrix(n)})

    def table(self, values, names):
        cm = values["confusion"].cpu().tolist()
        return [["true \\ predicted", *names]] + [[names[i], *map(int, row)] for i, row in enumerate(cm)]


class Tagging(Problem):
    # PR-AUC: the literature's headline metric for MagnaTagATune (ROC-AUC saturates).
    monitor, table_name = "val/pr_auc", "per_tag_metrics.csv"

    def loss(self, logits, target, task, embedding=None):
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))

    def metrics(self, spec):
        return MacroTagMetrics(spec.num_classes)

    def table(self, values, names):
        roc, pr = values["per_tag_roc_auc"].cpu().tolist(), values["per_tag_pr_auc"].cpu().tolist()
        return [["tag", "roc_auc", "pr_auc"]] + [[n, f"{r:.4f}", f"{p:.4f}"] for n, r, p in zip(names, roc, pr)]


class Regression(Problem):
    monitor, table_name = "val/r2", "per_target_metrics.csv"

    def loss(self, logits, target, task, embedding=None):
        """On the values (the target's own scale), so that losses of models and data compare."""
        values, target = probabilities(logits.float(), "regression", task.spec.target_scale), target.float()
        kind = task.hparams.get("regression_loss", "mse")
        if kind == "ccc":
            return ccc_loss(values, target)
        return F.huber_loss(values, target) if kind == "huber" else F.mse_loss(values, target)

    def metrics(self, spec):
        return RegressionMetrics(list(spec.label_names))

    def table(self, values, names):
        rows = values["per_target"].cpu().tolist()
        return [["target", "r2", "pearson", "ccc"]] + [[n, *(f"{v:.4f}" for v in row)] for n, row in zip(names, rows)]


def retrieval_scores(embeddings: torch.Tensor | None, works: torch.Tensor, top: int = 10, block: int = 1024,
                     similarity: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Version retrieval over a set of performances: each one queries all the others, ranked by
    the cosine of ``embeddings`` (N, D), or by ``similarity(rows)`` (the (len(rows), N) similarities
    of those queries to every performance, for a measure that is no dot product, e.g. the best of
    12 transpositions); the relevant answers are the other performances of its work (``works``
    (N,), any integer ids).

    Per query: average precision (the mean, over its relevant answers, of the precision at each
    one's rank), the rank of the first relevant answer (1 = the top answer) and the share of
    relevant answers in the first ``top`` (divided by ``top``, as Da-TACOS does, also for a work
    with fewer performances). Returned means: ``map``, ``mr1``, ``p10``; ``queries``, how many
    had a relevant answer (a work performed once in the set asks no question and is left out);
    and ``ap``, each query's AP (NaN for those left out). Equal similarities keep the set's order.
    Computed ``block`` queries at a time, in float64.
    """
    if similarity is None:
        x = F.normalize(embeddings.double(), dim=1)
        similarity = lambda rows: x[rows] @ x.T  # noqa: E731
    works = works.long()
    n = len(works)
    ranks = torch.arange(1, n, dtype=torch.float64)
    ap, first, precision = [], [], []
    for start in range(0, n, block):
        rows = torch.arange(start, min(start + block, n))
        sims = similarity(rows).double().cpu().clone()
        sims[torch.arange(len(rows)), rows] = -math.inf  # a query is not its own answer
        order = sims.argsort(dim=1, descending=True, stable=True)[:, : n - 1]
        relevant = works[order] == works[rows, None]
        hits = relevant.cumsum(1).double()
        count = hits[:, -1] if n > 1 else torch.zeros(len(rows), dtype=torch.float64)
        ap.append(torch.where(count > 0, (hits / ranks * relevant).sum(1) / count.clamp_min(1), math.nan))
        first.append(torch.where(count > 0, relevant.double().argmax(1) + 1.0, math.nan))
        precision.append(torch.where(count > 0, relevant[:, :top].sum(1) / float(top), math.nan))
    ap, first, precision = (torch.cat(v) if v else torch.zeros(0, dtype=torch.float64) for v in (ap, first, precision))
    asked = ~ap.isnan()
    mean = lambda v: v[asked].mean() if asked.any() else torch.tensor(math.nan, dtype=torch.float64)  # noqa: E731
    return {"map": mean(ap), "mr1": mean(first), "p10": mean(precision), "queries": asked.sum(), "ap": ap}


def batch_hard_triplet(embedding: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017) on cosine distances of the unit
    ``embedding``: each anchor with another performance of its work and another work in the batch
    pulls its farthest positive within ``margin`` of its nearest negative. 0 when no anchor has both."""
    x = F.normalize(embedding.float(), dim=1)
    distance = 1 - x @ x.T
    same = target[:, None] == target[None, :]
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    positive, negative = same & ~eye, ~same
    usable = positive.any(1) & negative.any(1)
    if not usable.any():
        return distance.sum() * 0  # keeps the graph (and DDP's gradient buckets) whole
    hardest_positive = distance.masked_fill(~positive, -math.inf).amax(1)
    hardest_negative = distance.masked_fill(~negative, math.inf).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin)[usable].mean()


class VersionMetrics(EpochMetric):
    """MAP, MR1 and P@10 (:func:`retrieval_scores`) over all clip embeddings of an epoch, and per work."""

    def compute(self) -> dict[str, torch.Tensor]:
        embeddings, works = self.gathered()
        scores = retrieval_scores(embeddings.cpu(), works.long().cpu())
        values = {k: scores[k].float() for k in ("map", "mr1", "p10")}
        values["queries"] = scores["queries"].float()
        values["per_query_ap"], values["works"] = scores["ap"].float(), works.long()
        return values


class VersionIdentification(Problem):
    """Clique labels: ``target`` is a performance's work. The head classifies the training works
    (cross-entropy; targets at or past ``num_classes``, the works of the evaluation parts, take no
    part in it); ``triplet_weight`` x :func:`batch_hard_triplet` shapes the embedding that
    retrieval uses, which is what generalises to works never seen."""

    monitor, table_name = "val/map", "per_work_metrics.csv"

    def loss(self, logits, target, task, embedding=None):
        known = target < logits.shape[1]
        ce = F.cross_entropy(logits[known].float(), target[known]) if known.any() else logits.sum() * 0
        weight = task.hparams.get("triplet_weight", 1.0)
        return ce + weight * batch_hard_triplet(embedding, target, task.hparams.get("triplet_margin", 0.3))

    def chunk_values(self, logits, embedding, spec):
        return F.normalize(embedding.float(), dim=1)

    def metrics(self, spec):
        return VersionMetrics(spec.num_classes)

    def table(self, values, names):
        """One row per work of the evaluated part: its performances and their mean AP as queries."""
        works, ap = values["works"].cpu(), values["per_query_ap"].cpu()
        rows = [["work", "performances", "map"]]
        for work in works.unique().tolist():
            mine = ap[works == work]
            rows.append([work, len(mine), "" if mine.isnan().all() else f"{mine.nanmean().item():.4f}"])
        return rows


PROBLEMS: dict[str, Problem] = {"multiclass": Classification(), "multilabel": Tagging(), "regression": Regression(),
                                "versions": VersionIdentification()}
