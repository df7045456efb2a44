"""The one LightningModule: multi-class genre classification, multi-label tagging or regression
(valence and arousal); what differs between them is :mod:`zoo.problems`' business.

Evaluation is clip-level, as in the literature: a validation/test batch holds all evenly
spaced chunks of each clip (``batch["clip"]`` says which clip a chunk belongs to), the
chunk probabilities (softmax or sigmoid; regression outputs as they are) are averaged per
clip, and metrics are computed on those clip predictions. The loss is still reported per chunk.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchaudio.transforms import FrequencyMasking, TimeMasking

from datamodules.primitives.chunks import DEFAULT_CHUNK_SECONDS, clip_mean, probabilities
from . import transfer
from .build import build_model
from .problems import PROBLEMS, RegressionLoss
from .spec import ModelSpec

TaskType = Literal["multiclass", "multilabel", "regression", "versions"]


class SpecAugment(nn.Module):
    """SpecAugment-style masking (Park et al. 2019) on normalised features, on the device.

    Masks are drawn independently per example; the masked value 0 is the mean of the
    batch-normalised input, so masking removes information without adding a loud edge.
    """

    def __init__(self, freq_mask: int = 16, time_mask: int = 32, num_masks: int = 2):
        super().__init__()
        self.masks = nn.Sequential(
            *[FrequencyMasking(freq_mask, iid_masks=True) for _ in range(num_masks)],
            *[TimeMasking(time_mask, iid_masks=True) for _ in range(num_masks)],
        )

    def forward(self, spec):
        return self.masks(spec)


class KeyShift(nn.Module):
    """Random transposition of pitch-aligned features (B, 1, F, T), per example, on the device: each
    example moves by a whole number of semitones in [-max_semitones, max_semitones], i.e. by that many
    times ``rows_per_semitone`` rows, with the rows shifted past an edge dropped and the others filled
    with 0 (the normalised input's mean), or wrapped round for pitch classes (chroma).

    A cover is often in another key; shown every key of each training work, a model cannot tell
    works apart by their key (key invariance by augmentation, as CQTNet and ByteCover train)."""

    def __init__(self, max_semitones: int, rows_per_semitone: int, wrap: bool):
        super().__init__()
        if max_semitones < 0 or rows_per_semitone < 1:
            raise ValueError(f"key_shift must be a number of semitones >= 0, got {max_semitones}")
        self.max_semitones, self.rows_per_semitone, self.wrap = int(max_semitones), int(rows_per_semitone), wrap

    @classmethod
    def of(cls, frontend, max_semitones: int) -> KeyShift:
        """The shift for ``frontend``; a ``ValueError`` for one whose rows are not pitch-aligned."""
        if not getattr(frontend, "rows_per_semitone", None):
            raise ValueError(f"key_shift needs a pitch-aware front-end whose rows are semitones or a whole fraction "
                             f"of one (cqt with bins_per_octave a multiple of 12, chroma); this model's is "
                             f"{frontend.name!r}")
        return cls(max_semitones, frontend.rows_per_semitone, frontend.pitch_classes)

    def forward(self, spec):
        b, _, rows, _ = spec.shape
        steps = torch.randint(-self.max_semitones, self.max_semitones + 1, (b,), device=spec.device)
        source = torch.arange(rows, device=spec.device)[None, :] - (steps * self.rows_per_semitone)[:, None]  # (B, F)
        if self.wrap:
            source = source % rows
        inside = (source >= 0) & (source < rows)
        moved = spec.gather(2, source.clamp(0, rows - 1)[:, None, :, None].expand(-1, 1, -1, spec.shape[-1]))
        return moved * inside[:, None, :, None].to(spec.dtype)


class MusicTask(L.LightningModule):
    """Train and evaluate any zoo model on any front-end.

    Args:
        architecture: zoo model name (``musiczoo models`` lists them), e.g. ``resnet_gru``, ``timm/resnet18``;
            unset: ``resnet_gru``, or the source's with ``init_from``.
        transform: ``mel``, ``mfcc`` or ``stft``; unset: ``mel``, or the source's with ``init_from``.
        num_classes, task, sample_rate, chunk_seconds, label_names, target_scale, provenance: linked from the
            data module by the CLI, so the checkpoint records what a published model needs
            (``provenance`` is the data module's ``{"dataset", "split", "synthetic"}``).
            These and ``transform_params``, ``model_params`` are the fields of the net's
            :class:`~zoo.spec.ModelSpec` (``self.spec``).
        transform_params: front-end settings (n_fft, hop_length, n_mels, n_mfcc, f_min, f_max, top_db).
        model_params: architecture settings passed to the model constructor.
        lr, weight_decay: AdamW; no weight decay on biases and normalisation weights.
        warmup_ratio: share of training steps with linear warm-up before the cosine decay.
        spec_augment: mask frequency/time bands of the training features (sizes in bins/frames).
        label_smoothing: for the multiclass cross-entropy.
        regression_loss: for regression: ``mse``, ``huber`` (delta 1, less swayed by a few badly
            annotated songs) or ``ccc`` (1 - the batch's concordance correlation coefficient).
        triplet_weight, triplet_margin: for ``versions``: the weight of the batch-hard triplet term
            beside the cross-entropy over the training works, and its margin in cosine distance.
        key_shift: transpose each training example by a random number of semitones, up to this many
            either way (its pitch-aware features shifted by that many rows, :class:`KeyShift`): what makes a
            version model key-invariant. Needs a ``cqt`` or ``chroma`` front-end; 0: off.
        checkpoint_every_n_steps: how often ``last.ckpt`` is written within an epoch (it is also
            written at every epoch's end and on SIGTERM), i.e. the most steps a SIGKILL can lose.
        init_from: start from this model's weights (anything ``musiczoo predict`` takes: a published
            folder, a ``.ckpt``, an ``arch.tag`` name, a Hub id). Its spec decides the architecture,
            the front-end and the sample rate: fields left unset are taken from it, fields set to
            another value are an error. The encoder is loaded; the head too when the labels are the
            same (:mod:`zoo.transfer`).
        freeze: ``encoder`` trains a linear probe: only the head's parameters change.
        encoder_lr_scale: the encoder's learning rate is ``lr * encoder_lr_scale`` (discriminative
            fine-tuning; 0 is not a probe: the encoder's normalisation statistics still move).
    """

    def __init__(
        self,
        architecture: str | None = None,
        transform: str | None = None,
        num_classes: int = 10,
        task: TaskType = "multiclass",
        sample_rate: int | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        label_names: list[str] | None = None,
        target_scale: tuple[float, float] | None = None,
        provenance: dict | None = None,
        transform_params: dict | None = None,
        model_params: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_ratio: float = 0.05,
        spec_augment: bool = False,
        freq_mask: int = 16,
        time_mask: int = 32,
        num_masks: int = 2,
        label_smoothing: float = 0.0,
        regression_loss: RegressionLoss = "mse",
        triplet_weight: float = 1.0,
        triplet_margin: float = 0.3,
        key_shift: int = 0,
        checkpoint_every_n_steps: int = 500,
        init_from: str | None = None,
        freeze: Literal["encoder"] | None = None,
        encoder_lr_scale: float = 1.0,
    ):
        super().__init__()
        transfer.check_freeze(freeze, init_from, encoder_lr_scale)
        self.save_hyperparameters()
        source = None
        if init_from:
            # The fields the source decides, and its name in the provenance, go into the hyperparameters
            # (what checkpoints record), so a checkpoint describes the model that was built.
            source, state = transfer.read_source(init_from)
            self.hparams.update(transfer.resolve_fields(self.hparams, source, init_from))
            self.hparams["provenance"] = {**(provenance or {}), "init_from": str(init_from), "freeze": freeze}
        self.hparams.update(architecture=self.hparams["architecture"] or "resnet_gru",
                            transform=self.hparams["transform"] or "mel",
                            sample_rate=self.hparams["sample_rate"] or 22050)
        self.net = build_model(ModelSpec.from_arguments(self.hparams))
        if source is not None:
            line = transfer.load_source_weights(self.net, source, state, init_from)
            if freeze:
                transfer.freeze_encoder(self.net)
                transfer.keep_encoder_in_eval(self.net)  # Lightning trains modules in the mode fit finds them
                warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")  # that, intended
                line += "; encoder frozen (linear probe)"
            elif encoder_lr_scale != 1:
                line += f"; encoder learning rate x{encoder_lr_scale:g}"
            transfer.announce(line)
        augment = ([KeyShift.of(self.net.frontend, key_shift)] if key_shift else []) + (
            [SpecAugment(freq_mask, time_mask, num_masks)] if spec_augment else [])
        if augment:
            self.net.spec_augment = augment[0] if len(augment) == 1 else nn.Sequential(*augment)
        self.metrics = nn.ModuleDict({stage: self._make_metrics() for stage in ("val", "test")})

    @property
    def spec(self) -> ModelSpec:
        """The spec of the model being trained (what its checkpoints and published folders record)."""
        return self.net.spec

    @property
    def problem(self):
        """The :class:`~zoo.problems.Problem` of the spec's task: loss, metrics, monitor, test table."""
        return PROBLEMS[self.spec.task]

    @property
    def monitor(self) -> str:
        """The validation metric that picks the best checkpoint: accuracy for genres, PR-AUC for tags,
        mean R² over targets for regression."""
        return self.problem.monitor

    def configure_callbacks(self):
        """The best checkpoint by :attr:`monitor` and ``last.ckpt`` (every
        ``checkpoint_every_n_steps``, every epoch, on SIGTERM), in ``<default_root_dir>/checkpoints``
        (see :mod:`zoo.resume`), so no config repeats the block, none can monitor a metric its
        task does not log, and ``--ckpt_path last`` finds the previous run's checkpoint.

        A trainer given its own ``ModelCheckpoint`` with a ``monitor`` keeps it (and still gets
        ``last.ckpt``); one with checkpointing disabled gets none.
        """
        from .resume import LastCheckpoint, best_checkpoint, last_checkpoint

        configured = self.trainer.checkpoint_callbacks
        if not configured:
            return []
        last = LastCheckpoint(last_checkpoint(self.trainer), self.hparams.checkpoint_every_n_steps)
        return [last] if any(cb.monitor for cb in configured) else [best_checkpoint(self.trainer, self.monitor), last]

    # ---- metrics -----------------------------------------------------------------
    def _make_metrics(self) -> nn.Module:
        return self.problem.metrics(self.spec)

    # ---- forward / loss ------------------------------------------------------------
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net(waveform)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """The problem's loss; ``embedding`` (the one ``logits`` came from) is needed by ``versions`` only."""
        return self.problem.loss(logits, target, self, embedding)

    def training_step(self, batch, batch_idx):
        embedding, logits = self.net.embed_and_logits(batch["audio"])
        loss = self.loss(logits, batch["target"], embedding)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["target"]))
        return loss

    def _eval_step(self, batch, stage: str):
        """Chunk outputs -> clip predictions (mean over each clip's chunks) -> the metrics; the loss per chunk."""
        embedding, logits = self.net.embed_and_logits(batch["audio"])
        target = batch["target"]
        loss = self.loss(logits, target[batch["clip"]], embedding)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(target), sync_dist=True)
        values = self.problem.chunk_values(logits, embedding, self.spec)
        self.metrics[stage].update(clip_mean(values, batch["clip"], len(batch["key"])), target)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        """Clip-level probabilities (for ``versions``: of the training works), as ``musiczoo predict`` gives them."""
        probs = probabilities(self(batch["audio"]).float(), self.spec.task, self.spec.target_scale)
        return {"key": batch["key"], "probs": clip_mean(probs, batch["clip"], len(batch["key"])).cpu()}

    def _log_epoch_metrics(self, stage: str) -> dict:
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        scalars = {k: v for k, v in values.items() if v.dim() == 0}
        self.log_dict({f"{stage}/{k}": v for k, v in scalars.items()}, prog_bar=True, sync_dist=False)
        return values

    def on_validation_epoch_end(self):
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self):
        values = self._log_epoch_metrics("test")
        if self.trainer.is_global_zero:
            self._write_test_tables(values)

    def _write_test_tables(self, values: dict):
        """The confusion matrix (multiclass), per-tag AUCs (multilabel) or per-target R², r and CCC
        (regression) as CSV next to the logs."""
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / self.problem.table_name
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(self.problem.table(values, list(self.spec.label_names)))
        rank_zero_info(f"test tables written to {path}")

    # ---- optimisation --------------------------------------------------------------
    def on_fit_start(self):
        """Train on the CPU with the convolutions' weights in ``channels_last`` (NHWC): oneDNN's
        convolution kernels, forward and backward, are fastest on that layout. Training samples/s
        in float32 on 2 cores (``benchmarks/PERF.md`` (b)): resnet_gru 1.15x, resnet_vit 1.42x, crnn
        1.31x, fcn 1.29x, short_chunk_cnn 1.47x; short_chunk_resnet 0.91x, so it opts out
        (``channels_last_on_cpu``). Only the strides change, not a value; on a GPU the layout is
        left as it is (not measured here)."""
        if self.device.type == "cpu" and self.net.channels_last_on_cpu:
            self.net.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode through ``.train()`` too (its BatchNorm statistics are
        part of what a linear probe must leave unchanged)."""
        super().train(mode)
        if self.hparams.get("freeze") == "encoder":
            transfer.keep_encoder_in_eval(self.net)
        return self

    def configure_optimizers(self):
        hp = self.hparams
        groups = transfer.optimizer_groups(self.net, hp.lr, hp.weight_decay, hp.get("encoder_lr_scale", 1.0))
        optimizer = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.hparams.warmup_ratio * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
