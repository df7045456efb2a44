"""Every registered model on every front-end: forward, backward, embed, two input lengths."""

import pytest
import torch

from zoo.frontends import UnknownNameError, list_transforms
from zoo.build import build_model
from zoo.factory import create_model, list_models

SR = 16000
MODELS = list_models() + ["timm/resnet18"]


def test_registry_lists_the_zoo():
    assert {"resnet_gru", "resnet_vit", "fcn", "crnn", "short_chunk_cnn", "short_chunk_resnet"} <= set(list_models())
    assert list_models("resnet_*") == ["resnet_gru", "resnet_vit"]
    assert list_models("short_chunk_*") == ["short_chunk_cnn", "short_chunk_resnet"]


@pytest.mark.parametrize("transform", list_transforms())
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_embed(name, transform):
    torch.manual_seed(0)
    # 12 chroma rows and 513 STFT bins: the extremes of the frequency sizes a model must accept.
    params = {"mfcc": {"n_mfcc": 20}, "stft": {"n_fft": 1024}, "mel": {}, "cqt": {}, "chroma": {}}[transform]
    model = create_model(name, transform=transform, num_classes=7, sample_rate=SR, transform_params=params)
    assert model.n_bins in {"mel": (128,), "mfcc": (20,), "stft": (513,), "cqt": (84,), "chroma": (12,)}[transform]
    for seconds in (1.0, 2.5):
        x = torch.randn(2, int(seconds * SR))
        model.train()
        logits = model(x)
        assert logits.shape == (2, 7)
        assert torch.isfinite(logits).all()
        logits.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        model.zero_grad()
        model.eval()
        with torch.no_grad():
            emb = model.embed(x)
        assert emb.shape == (2, model.embed_dim)
        assert torch.isfinite(emb).all()


def test_eval_is_deterministic_and_batch_independent():
    model = create_model("resnet_gru", transform="mel", num_classes=4, sample_rate=SR).eval()
    x = torch.randn(3, SR)
    with torch.no_grad():
        full = model(x)
        single = model(x[1:2])
    assert torch.allclose(full[1], single[0], atol=1e-4)


def test_config_rebuilds_the_same_model():
    model = create_model("resnet_vit", transform="mfcc", num_classes=5, sample_rate=SR, transform_params={"n_mfcc": 30}, depth=2)
    rebuilt = build_model(model.spec)
    assert rebuilt.spec == model.spec
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    assert not any("fb" in k or "window" in k or "dct" in k for k in model.state_dict())


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid models: .*resnet_gru.*timm/<timm model>"):
        create_model("resnet_lstm")
    with pytest.raises(UnknownNameError, match="valid transforms: chroma, cqt, mel, mfcc, stft"):
        create_model("fcn", transform="wavelet")
    with pytest.raises(UnknownNameError, match="timm/not_a_net"):
        create_model("timm/not_a_net")
