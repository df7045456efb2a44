"""Export for deployment: a model as one ONNX or TorchScript file that takes raw audio.

The front-end is inside the graph, so the file maps ``audio`` (batch, samples) at the
model's sample rate, both dimensions dynamic, to ``logits`` (batch, classes) and
``embedding`` (batch, embed_dim): what ``predict_files`` needs, with no Python model code.
The spec travels with the file twice: ``config.json`` beside it (the published folder's
``config.json``, ``zoo.hub.published_config``, plus an ``export`` record) and inside it (the
ONNX ``metadata_props`` key ``musiczoo_config``; TorchScript's extra file ``config.json``).

Why the TorchScript-based ONNX exporter (``torch.onnx.export(dynamo=False)``, opset 17): with
a dynamic batch and length the dynamo exporter (torch 2.9) stops on guards (``batch != 1``)
and on the GRUs' shapes; the tracing exporter maps ``nn.GRU`` to ONNX's ``GRU`` and
``torch.stft`` to ONNX's ``STFT``. Traced code sees ``torch.jit.is_tracing()``, where the few
size-dependent steps take a length-free form that computes the same numbers
(``zoo.models.base.pool_to_fit`` and ``pool_frequency``, the ViT's position embedding, the
front-end's real-valued STFT). Every export is checked before it is written: the file, run
on a length other than the one it was traced at, must give the PyTorch model's probabilities
within :data:`PARITY_TOLERANCE`.

``onnx``, ``onnxruntime`` and ``onnxscript`` are the ``export`` extra
(``pip install 'musiczoo[export]'``); without them an ``ImportError`` of one line names it.
Running an exported file is ``zoo.exported``'s job (which ``zoo.predict`` reaches without
importing the models).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from datamodules.primitives.chunks import chunk_samples, probabilities
from datamodules.primitives.files import write_atomically

from .exported import (
    EXPORT_FILES,
    METADATA_KEY,
    OUTPUT_NAMES,
    ExportedModel,
    load_exported,
    load_exported_bytes,
    one_line,
    require,
)
from .hub import published_config
from .spec import CONFIG_NAME, ModelError, ModelSpec

DEFAULT_OPSET = 17  # the first opset with STFT
#: Largest |probability difference| between an exported file and the PyTorch model it came from.
PARITY_TOLERANCE = 1e-4
INPUT_NAMES = ["audio"]


class ExportGraph(nn.Module):
    """What is exported: raw audio -> (logits, embedding), the model in eval mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, logits = self.model.embed_and_logits(audio)
        return logits, embedding


def export_path(out: str | Path, fmt: str) -> Path:
    """The file an export to ``out`` writes: ``out`` itself when it ends in ``.onnx``/``.pt``,
    else ``out/model.onnx`` (``model.pt``); ``config.json`` goes beside it."""
    out = Path(out)
    if fmt not in EXPORT_FILES:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORT_FILES)}")
    suffix = Path(EXPORT_FILES[fmt]).suffix
    if out.suffix in {".onnx", ".pt"}:
        if out.suffix != suffix:
            raise ValueError(f"{out}: a {fmt} export is a {suffix} file")
        return out
    return out / EXPORT_FILES[fmt]


def _examples(spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The tracing input (two chunks of the model's length) and the check input (three chunks of
    another length), deterministic and music-like enough (noise plus a tone) to be non-trivial."""
    n = chunk_samples(spec.chunk_seconds, spec.sample_rate)
    g = torch.Generator().manual_seed(0)

    def audio(batch, length):
        t = torch.arange(length) / spec.sample_rate
        return 0.1 * torch.randn(batch, length, generator=g) + 0.5 * torch.sin(2 * torch.pi * 440.0 * t)

    return audio(2, n), audio(3, n + n // 3 + 7)


def export_model(model: nn.Module, out: str | Path, *, fmt: str = "onnx", opset: int = DEFAULT_OPSET,
                 force: bool = False) -> Path:
    """Write ``model`` (any zoo model) as an ONNX or TorchScript file plus ``config.json`` beside it.

    Returns the file's path. An existing file is replaced only with ``force``. An
    architecture whose graph cannot be exported, or whose export does not match the PyTorch
    model, is a :class:`~zoo.spec.ModelError` of one line; nothing is written then.
    """
    path = export_path(out, fmt)
    if path.exists() and not force:
        raise ModelError(f"{path} exists; export to another place, or pass --force (force=True) to replace it")
    if path.parent.exists() and not path.parent.is_dir():
        raise ModelError(f"{path.parent} is a file, not a folder to export into")
    spec = model.spec
    model = model.cpu().float().eval()
    config = published_config(spec, sum(p.numel() for p in model.parameters()))
    config["export"] = {"format": fmt, "file": path.name, "inputs": {"audio": ["batch", "samples"]},
                        "outputs": {"logits": ["batch", spec.num_classes], "embedding": ["batch", "embed_dim"]},
                        **({"opset": opset} if fmt == "onnx" else {})}
    text = json.dumps(config, indent=2) + "\n"
    graph, (example, check) = ExportGraph(model).eval(), _examples(spec)
    data = _onnx_bytes(graph, example, opset, text, spec) if fmt == "onnx" else _torchscript_bytes(graph, example, text)
    runner = load_exported_bytes(data, fmt, spec, path)
    with torch.inference_mode():
        expected = graph(check)
    difference = max_probability_difference(spec, expected[0], torch.from_numpy(runner.run(check.numpy())[0]))
    if not difference <= PARITY_TOLERANCE:
        raise ModelError(f"{spec.architecture}: the {fmt} export does not match the PyTorch model (max probability "
                         f"difference {difference:.2g} > {PARITY_TOLERANCE}); not written")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path.parent, {path.name: lambda p: p.write_bytes(data),
                                   CONFIG_NAME: lambda p: p.write_text(text)})
    return path


def max_probability_difference(spec: ModelSpec, logits: torch.Tensor, other: torch.Tensor) -> float:
    outputs = [probabilities(x.float(), spec.task, spec.target_scale) for x in (logits, other)]
    return float((outputs[0] - outputs[1]).abs().max())


def _onnx_bytes(graph: nn.Module, example: torch.Tensor, opset: int, config_text: str, spec: ModelSpec) -> bytes:
    onnx = require("onnx")
    require("onnxruntime")
    buffer = io.BytesIO()
    try:
        # Tracer warnings about the fixed frequency size are expected; on failure the exporter prints the
        # whole graph to stdout, which is not the one line a user can act on.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=opset, input_names=INPUT_NAMES,
                              output_names=OUTPUT_NAMES, dynamic_axes={"audio": {0: "batch", 1: "samples"},
                                                                       "logits": {0: "batch"}, "embedding": {0: "batch"}})
    except Exception as e:  # noqa: BLE001 (the exporter's errors are of many types; each means "this graph cannot be exported")
        raise ModelError(f"{spec.architecture}: cannot be exported to ONNX (opset {opset}): {one_line(e)}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, config_text
    return proto.SerializeToString()


def _torchscript_bytes(graph: nn.Module, example: torch.Tensor, config_text: str) -> bytes:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, (example,), check_trace=False)
    except Exception as e:  # noqa: BLE001 (any failure means "this graph cannot be traced")
        raise ModelError(f"{graph.model.spec.architecture}: cannot be traced to TorchScript: {one_line(e)}") from None
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={CONFIG_NAME: config_text})
    return buffer.getvalue()


__all__ = ["EXPORT_FILES", "PARITY_TOLERANCE", "ExportedModel", "export_model", "load_exported"]
