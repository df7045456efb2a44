"""Mixed precision on every architecture: finite losses, float32 front-ends and float32 checkpoints.

``bf16-mixed`` runs through a real Lightning Trainer on the CPU. Lightning maps ``16-mixed`` on
the CPU to bf16, so float16 autocast with gradient scaling is checked with torch's own CPU
autocast and ``GradScaler`` (the same ops a CUDA ``16-mixed`` run uses, on this machine).
"""

import lightning as L
import pytest
import torch

from conftest import TINY_SR, TinyData
from zoo.factory import list_models
from zoo.task import MusicTask

ARCHITECTURES = list_models()


def task(architecture: str) -> MusicTask:
    return MusicTask(architecture=architecture, transform="mel", num_classes=3, sample_rate=TINY_SR,
                     chunk_seconds=1.0, transform_params={"n_fft": 512, "hop_length": 256, "n_mels": 64})


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_bf16_mixed_trains_with_finite_loss_and_saves_float32(architecture, tmp_path):
    L.seed_everything(0)
    model, losses = task(architecture), LossRecorder()
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=3, logger=False, callbacks=[losses],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=TinyData())
    assert len(losses.losses) == 3 and all(torch.isfinite(torch.tensor(losses.losses)))
    trainer.save_checkpoint(tmp_path / "bf16.ckpt")
    state = torch.load(tmp_path / "bf16.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    floats = {name: t.dtype for name, t in state.items() if t.is_floating_point()}
    assert floats and set(floats.values()) == {torch.float32}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_float16_autocast_with_gradient_scaling_stays_finite(architecture):
    torch.manual_seed(0)
    model = task(architecture).net
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    audio, target = torch.randn(4, TINY_SR), torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.float16):
            features = model.frontend(audio)
            logits = model(audio)
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
        # The front-end computes in float32 even inside fp16 autocast: log-power needs the range.
        assert features.dtype == torch.float32
        assert logits.dtype in (torch.float16, torch.float32) and torch.isfinite(loss)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(torch.tensor(scaler.get_scale()))


def test_front_ends_stay_float32_under_bf16_autocast():
    model = task("crnn").net
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.frontend(torch.randn(2, TINY_SR))
    assert features.dtype == torch.float32


def test_a_strided_block_on_a_one_frame_map_keeps_bf16_gradients_finite():
    """torch 2.9's oneDNN bf16 weight gradient for a conv striding over a width-1 map is NaN in
    about a third of backward passes on this CPU; ``StridedConv2d`` drops that no-op stride in
    training (what NaN-ed short_chunk_resnet's bf16 run on 1 s chunks). Same outputs as the
    strided conv it replaces, in float32, in training and in evaluation."""
    from zoo.models.cnn import ResBlock2d

    torch.manual_seed(0)
    block = ResBlock2d(64, 128)
    x = torch.randn(4, 64, 3, 1)
    strided = torch.nn.functional.conv2d(x, block.main[0].weight, None, 2, 1)
    assert torch.equal(block.main[0](x), strided)
    assert torch.equal(block.main[0].eval()(x), strided)
    block.train()
    for _ in range(30):
        block.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x)
        out.float().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in block.parameters())
