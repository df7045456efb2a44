"""Baseline CNNs from the music-tagging literature, re-implemented for any input size.

The papers fix the input (e.g. 96 Mel bins x 29 s); here every pooling uses
``pool_to_fit`` and ends in a global pool, so the same baselines run on 20 MFCCs or 513
STFT bins and on 1-second or 5-minute inputs. Layer widths follow the papers (FCN and
CRNN: the sizes compared in Won et al. 2020's re-implementation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .base import ConvBNReLU, WaveformModel, pool_to_fit


class FCN(WaveformModel):
    """Fully convolutional network (Choi, Fazekas & Sandler, ISMIR 2016): five 3x3 conv
    layers with max-pooling (2,4),(2,4),(2,4),(3,5),(4,4), then a global max."""

    POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))

    def __init__(self, channels=(64, 128, 128, 128, 64), dropout: float = 0.5, **common):
        super().__init__(dropout=dropout, **common)
        chans = (1, *channels)
        self.convs = nn.ModuleList(ConvBNReLU(chans[i], chans[i + 1]) for i in range(len(channels)))
        self.build_head(channels[-1])

    def body(self, x):
        for conv, pool in zip(self.convs, self.POOLS):
            x = pool_to_fit(conv(x), pool)
        return x.amax(dim=(-2, -1))


class CRNN(WaveformModel):
    """Convolutional recurrent network (Choi, Fazekas, Sandler & Cho, ICASSP 2017): four
    conv layers pooling (2,2),(3,3),(4,4),(4,4), frequency collapsed, a two-layer GRU,
    and its last hidden state as the clip summary."""

    POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))

    def __init__(self, channels=(64, 128, 128, 128), gru_hidden: int = 32, dropout: float = 0.5, **common):
        super().__init__(dropout=dropout, **common)
        chans = (1, *channels)
        self.convs = nn.ModuleList(ConvBNReLU(chans[i], chans[i + 1]) for i in range(len(channels)))
        self.gru = nn.GRU(channels[-1], gru_hidden, num_layers=2, batch_first=True)
        self.build_head(gru_hidden)

    def body(self, x):
        for conv, pool in zip(self.convs, self.POOLS):
            x = pool_to_fit(conv(x), pool)
        seq = x.amax(dim=2).transpose(1, 2)  # (B, T', C)
        _, h = self.gru(seq)
        return h[-1]


class StridedConv2d(nn.Conv2d):
    """A "same"-padded strided conv that, in training, drops its time stride on a one-frame-wide map.

    There the stride changes nothing (one output frame either way). It is worth a class because
    torch 2.9's oneDNN weight gradient for a bfloat16 conv striding over a width-1 map is NaN in
    about one backward pass in three on the CPU (the forward and float32 are fine), which ends a
    bf16 run in NaN after a step or two: Short-chunk ResNet's seventh block sees width 1 on chunks
    under about a second. Evaluation and export keep the plain strided conv, so a traced graph
    never bakes in the short input's stride.
    """

    def forward(self, x):
        if self.training and x.shape[-1] == 1 and self.stride[1] > 1:
            return F.conv2d(x, self.weight, self.bias, (self.stride[0], 1), self.padding, self.dilation, self.groups)
        return super().forward(x)


class ResBlock2d(nn.Module):
    """Won et al.'s ``Res_2d``: two 3x3 convs with a strided 1x1 (or identity) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        self.main = nn.Sequential(
            StridedConv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.main(x) + self.shortcut(x))


class ShortChunkCNN(WaveformModel):
    """Short-chunk CNN (Won, Ferraro, Bogdanov & Serra, "Evaluation of CNN-based automatic
    music tagging models", SMC 2020): seven 3x3 conv + 2x2 max-pool layers
    (128..512 channels), global max, a 512-unit dense layer. Trained on ~3.7 s chunks."""

    def __init__(self, channels=(128, 128, 256, 256, 256, 256, 512), dense: int = 512, dropout: float = 0.5, residual: bool = False, **common):
        super().__init__(dropout=dropout, **common)
        chans = (1, *channels)
        if residual:
            self.layers = nn.ModuleList(ResBlock2d(chans[i], chans[i + 1]) for i in range(len(channels)))
        else:
            self.layers = nn.ModuleList(ConvBNReLU(chans[i], chans[i + 1]) for i in range(len(channels)))
        self.residual = residual
        self.channels_last_on_cpu = not residual  # its strided residual blocks train 0.91x as fast in it
        self.dense = nn.Sequential(nn.Linear(channels[-1], dense), nn.BatchNorm1d(dense), nn.ReLU(inplace=True))
        self.build_head(dense)

    def body(self, x):
        for layer in self.layers:
            x = layer(x) if self.residual else pool_to_fit(layer(x), (2, 2))
        return self.dense(x.amax(dim=(-2, -1)))


@register_model
def fcn(**kw):
    """FCN, Choi et al. 2016: five conv + max-pool layers, global max."""
    return FCN(**kw)


@register_model
def crnn(**kw):
    """CRNN, Choi et al. 2017: four conv layers + two-layer GRU."""
    return CRNN(**kw)


@register_model
def short_chunk_cnn(**kw):
    """Short-chunk CNN, Won et al. 2020: seven 3x3 conv layers on ~3.7 s chunks."""
    return ShortChunkCNN(**kw)


@register_model
def short_chunk_resnet(**kw):
    """Short-chunk ResNet, Won et al. 2020: the same stack with strided residual blocks."""
    return ShortChunkCNN(residual=True, **kw)
