"""The model families; importing this package registers every one of them (``zoo.registry``)."""

from . import cnn, resnet_gru, resnet_vit, timm_cnn  # noqa: F401
