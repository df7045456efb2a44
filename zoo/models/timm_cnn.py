"""``timm/<name>``: any timm CNN as a one-channel spectrogram model (no pretrained weights:
ImageNet weights cannot be downloaded offline, and their 3-channel stem does not match)."""

from __future__ import annotations

from ..frontends import UnknownNameError
from ..registry import register_model
from .base import WaveformModel


class TimmCNN(WaveformModel):
    def __init__(self, timm_name: str, dropout: float = 0.2, **common):
        super().__init__(dropout=dropout, **common)
        import timm  # here, not at the top: importing timm takes seconds that models without it need not pay

        try:
            self.backbone = timm.create_model(timm_name, pretrained=False, in_chans=1, num_classes=0)
        except RuntimeError as e:  # timm: "Unknown model (...)"
            raise UnknownNameError(f"timm/{timm_name}: {e}") from None
        self.build_head(self.backbone.num_features)

    def body(self, spec):
        return self.backbone(spec)


@register_model(name="timm")
def timm_cnn(**kw):  # reached through create_model("timm/<name>")
    return TimmCNN(**kw)
