"""ResNet + Vision-Transformer blocks: this project's tagging model, after the study's ResNet+ViT hybrid
(no publication of its own whose numbers it reproduces).

The SE-ResNet stem turns the spectrogram into one token per (downsampled) time step;
timm's ViT ``Block``s attend across the whole clip, and the class token is the clip
embedding. Position embeddings are learned at ``pos_len`` steps and linearly
resampled to the actual number of tokens, so any input length works (as in timm's
``resample_abs_pos_embed`` for images of another size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .base import ResNetStem, WaveformModel


class ResNetViT(WaveformModel):
    """SE-ResNet stem + ViT blocks with a class token (this project's tagging model)."""

    def __init__(self, channels=(32, 64, 128, 128), freq_bands: int = 4, embed_dim: int = 192, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, pos_len: int = 64, drop_path: float = 0.1,
                 dropout: float = 0.1, **common):
        super().__init__(dropout=dropout, **common)
        self.stem = ResNetStem(tuple(channels), freq_bands, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_len, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        rates = torch.linspace(0, drop_path, depth).tolist()
        from timm.models.vision_transformer import Block  # imported when built: timm takes seconds to import

        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=r) for r in rates])
        self.norm = nn.LayerNorm(embed_dim)
        self.build_head(embed_dim)

    def position_embedding(self, num_tokens: int) -> torch.Tensor:
        if num_tokens == self.pos_embed.shape[1] and not torch.jit.is_tracing():  # traced: length-free (equal at scale 1)
            return self.pos_embed
        pos = F.interpolate(self.pos_embed.transpose(1, 2), size=num_tokens, mode="linear", align_corners=False)
        return pos.transpose(1, 2)

    def body(self, spec):
        tokens = self.stem(spec)
        tokens = tokens + self.position_embedding(tokens.shape[1])
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.norm(self.blocks(x))[:, 0]


@register_model
def resnet_vit(**kw):
    """SE-ResNet stem + ViT blocks with a class token: this project's tagging model."""
    return ResNetViT(**kw)
