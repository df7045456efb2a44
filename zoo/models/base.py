"""What every zoo model shares: front-end -> input norm -> (SpecAugment) -> body -> head."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..frontends import create_frontend
from datamodules.primitives.audio import AudioDecodeError

from ..predict import predict_files


class WaveformModel(nn.Module):
    """Raw audio in, logits out.

    Subclasses build ``self.body`` (any module mapping (B, 1, F, T) log features to a
    (B, embed_dim) embedding) and set ``embed_dim``. ``spec_augment`` is an optional
    module applied to the normalised features in training mode only; it holds no
    weights, so it is never part of a checkpoint.
    """

    def __init__(self, transform: str, num_classes: int, sample_rate: int, transform_params: dict, dropout: float = 0.0):
        super().__init__()
        self.frontend = create_frontend(transform, sample_rate=sample_rate, **transform_params)
        # BatchNorm over the single input channel: dB features are ~[-80, 40], far from N(0, 1).
        self.input_norm = nn.BatchNorm2d(1)
        self.spec_augment: nn.Module | None = None
        self.dropout = nn.Dropout(dropout)
        self.num_classes = num_classes

    def build_head(self, embed_dim: int):
        self.embed_dim = embed_dim
        self.head = nn.Linear(embed_dim, self.num_classes)

    #: The modules after the embedding (``forward`` is ``head(dropout(embed(x)))``): the head. Every
    #: other module computes the embedding: the encoder. Transfer learning (``zoo.transfer``) moves,
    #: freezes and scales the learning rate of the encoder by this one split.
    HEAD_MODULES = ("dropout", "head")
    #: Whether a fit on the CPU keeps the convolutions' weights in ``channels_last``
    #: (``MusicTask.on_fit_start``): faster for every architecture measured but one
    #: (``benchmarks/PERF.md`` (b)), which sets it off.
    channels_last_on_cpu = True

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder's modules: front-end, input norm, SpecAugment and body (see :attr:`HEAD_MODULES`)."""
        return [m for name, m in self.named_children() if name not in self.HEAD_MODULES]

    @classmethod
    def is_head_key(cls, key: str) -> bool:
        """Whether a ``state_dict`` key or parameter name belongs to the head."""
        return key.split(".", 1)[0] in cls.HEAD_MODULES

    @property
    def n_bins(self) -> int:
        return self.frontend.n_bins

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(self.frontend(waveform))
        if self.training and self.spec_augment is not None:
            x = self.spec_augment(x)
        return x

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate embedding (B, embed_dim): the recommender's track vector."""
        return self.body(self.spectrogram(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(waveform)))

    def embed_and_logits(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding and the logits from one pass (what the recommender stores per chunk)."""
        embedding = self.embed(waveform)
        return embedding, self.head(self.dropout(embedding))

    #: What the model is (``zoo.spec.ModelSpec``): set by ``zoo.build.build_model``, the one constructor path.
    spec = None

    def predict(self, path, top_k: int | None = None, device: str | torch.device | None = None) -> dict[str, float]:
        """Probabilities of an audio file (any format soundfile reads), highest first; for a
        regression model, its values (e.g. ``{"valence": 6.1, "arousal": 4.3}``) in its target order.

        The file is cut into chunks of the model's chunk length and the chunk probabilities
        are averaged, as ``musiczoo predict`` does (see ``zoo.predict.predict_files``).
        """
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a folder; zoo.predict.predict_files predicts every file in one")
        (result,) = predict_files(self, [path], top_k=top_k, device=device, progress=False)
        if result.error:
            raise AudioDecodeError(result.error)
        return result.labels


def pool_to_fit(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Max-pool with the kernel clipped to the input, so fixed literature pooling sizes
    work for any number of frequency bins (20 MFCCs .. 513 STFT bins) and any length.

    Traced for export (``zoo.export``), a kernel read from the input's size would be frozen
    at the example's length; there the same windows come from a fixed kernel instead: padding
    ``k - 1`` rows of ``-inf`` and dropping the incomplete last window gives exactly the
    ``ceil_mode`` windows, one window over the whole axis when it is shorter than ``k``.
    """
    if torch.jit.is_tracing():
        return F.max_pool2d(F.pad(x, (0, kernel[1] - 1, 0, kernel[0] - 1), value=float("-inf")), kernel)
    kf, kt = min(kernel[0], x.shape[-2]), min(kernel[1], x.shape[-1])
    return F.max_pool2d(x, (kf, kt), ceil_mode=True)


def pool_frequency(x: torch.Tensor, bands: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(x, (bands, None))`` of (B, C, F, T), as a product with the fixed
    (F, bands) matrix of the same averages when traced for export: ONNX has no adaptive
    pooling over one axis of a tensor whose other axis has a dynamic size."""
    if not torch.jit.is_tracing():
        return F.adaptive_avg_pool2d(x, (bands, None))
    n = int(x.shape[-2])  # the frequency size is fixed by the front-end, never by the input's length
    weights = torch.zeros(n, bands, dtype=x.dtype, device=x.device)
    for i in range(bands):  # adaptive pooling's bins: [floor(i n / b), ceil((i + 1) n / b))
        lo, hi = (i * n) // bands, -((-(i + 1) * n) // bands)
        weights[lo:hi, i] = 1.0 / (hi - lo)
    return torch.matmul(x.transpose(-1, -2), weights).transpose(-1, -2)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride=1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SEResBlock(nn.Module):
    """Pre-activation-free ResNet basic block with squeeze-and-excitation (Hu et al. 2018).

    SE reweights channels from global context, which for spectrograms acts as a learned,
    clip-dependent timbre/instrument gate; it costs <1% of the block's parameters.
    """

    def __init__(self, cin: int, cout: int, stride=(1, 1), se_ratio: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        hidden = max(cout // se_ratio, 4)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cout, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1), nn.Sigmoid())
        self.shortcut = nn.Identity()
        if cin != cout or tuple(stride) != (1, 1):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out = out * self.se(out)
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetStem(nn.Module):
    """The shared local-feature extractor of ``resnet_gru`` and ``resnet_vit``.

    Frequency-aware strides: every stage halves frequency, but only the first two halve
    time, so the sequence model behind it keeps ~1/4 of the frame rate (about 10 steps a
    second at 22,050 Hz / hop 512). The remaining frequency axis is average-pooled to
    ``freq_bands`` coarse bands and flattened into the token, which keeps the spectral
    envelope and makes the output size independent of the front-end's number of bins.

    Output: (B, T', out_dim) tokens.
    """

    def __init__(self, channels=(32, 64, 128, 128), freq_bands: int = 4, out_dim: int = 256):
        super().__init__()
        self.conv = ConvBNReLU(1, channels[0])
        stages, cin = [], channels[0]
        for i, c in enumerate(channels):
            stride = (2, 2) if i < 2 else (2, 1)
            stages.append(SEResBlock(cin, c, stride=stride))
            cin = c
        self.stages = nn.Sequential(*stages)
        self.freq_bands = freq_bands
        self.proj = nn.Sequential(nn.Linear(cin * freq_bands, out_dim), nn.LayerNorm(out_dim), nn.GELU())
        self.out_dim = out_dim

    def forward(self, x):
        x = pool_frequency(self.stages(self.conv(x)), self.freq_bands)  # (B, C, bands, T')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C*bands)
        return self.proj(x)
