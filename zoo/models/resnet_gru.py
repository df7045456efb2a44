"""ResNet + bidirectional GRU: this project's genre model, after the study's ResNet+GRU hybrid
(no publication of its own whose numbers it reproduces).

The SE-ResNet stem sees local time-frequency patterns (onsets, timbre, chords); the
BiGRU reads the resulting token sequence to model rhythm and longer-range structure;
attention pooling lets the clip embedding weight the frames that matter.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model
from .base import ResNetStem, WaveformModel


class AttentionPool(nn.Module):
    """Additive attention over time (Bahdanau-style scores, softmax, weighted sum)."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):  # (B, T, D)
        w = torch.softmax(self.score(x).squeeze(-1), dim=1)
        return torch.einsum("bt,btd->bd", w, x)


class ResNetGRU(WaveformModel):
    """SE-ResNet stem + BiGRU + attention pooling (this project's genre model)."""

    def __init__(self, channels=(32, 64, 128, 128), freq_bands: int = 4, token_dim: int = 256,
                 gru_hidden: int = 128, gru_layers: int = 2, dropout: float = 0.3, **common):
        super().__init__(dropout=dropout, **common)
        self.stem = ResNetStem(tuple(channels), freq_bands, token_dim)
        self.gru = nn.GRU(token_dim, gru_hidden, num_layers=gru_layers, batch_first=True, bidirectional=True,
                          dropout=dropout if gru_layers > 1 else 0.0)
        self.pool = AttentionPool(2 * gru_hidden)
        self.build_head(2 * gru_hidden)

    def body(self, spec):
        seq, _ = self.gru(self.stem(spec))
        return self.pool(seq)


@register_model
def resnet_gru(**kw):
    """SE-ResNet stem + BiGRU + attention pooling: this project's genre model."""
    return ResNetGRU(**kw)
