"""Running an exported file (``zoo.export``): an ``.onnx`` file through onnxruntime on the CPU, a
``.pt`` file through ``torch.jit.load``, behind the calls ``predict_files`` makes of a model.

Apart from ``zoo.export``, which writes the files (and imports the models, the hub and the
exporter) and runs none. The spec is read from
inside the file (ONNX ``metadata_props`` key ``musiczoo_config``, TorchScript's extra file
``config.json``), else from the ``config.json`` beside it; every exported file is of config
version 2 or later, so no earlier version needs upgrading here.
"""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path

import torch

from datamodules.primitives.files import read_json, write_atomically

from .spec import CONFIG_NAME, ModelError, ModelSpec

#: The file an export writes into a folder, per format.
EXPORT_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
METADATA_KEY = "musiczoo_config"
OUTPUT_NAMES = ["logits", "embedding"]
EXTRA_HINT = "pip install 'musiczoo[export]'"


def require(module: str):
    """Import one of the ``export`` extra's packages, or an ``ImportError`` of one line naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; ONNX export and the onnx runtime need the export "
                          f"extra: {EXTRA_HINT}") from None


def one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


class ExportedModel:
    """An exported file behind the calls ``predict_files`` makes of a model (``spec``, ``__call__``,
    ``embed_and_logits``, ``eval``/``train``/``to``), so its chunking, clip means and output
    formats are the same code for both; only the model call differs. Runs on the CPU."""

    training = False
    #: What ``predict_files(..., runtime=...)`` expects of this model.
    runtime = "onnx"

    def __init__(self, spec: ModelSpec, run, path: Path, data: bytes, fmt: str, config_text: str):
        self.spec, self.run, self.path = spec, run, path
        #: The file's bytes and the spec's JSON text: what :meth:`save` writes and a library's
        #: model digest hashes (an exported file has no state_dict to hash).
        self.data, self.fmt, self.config_text = data, fmt, config_text

    def save(self, folder: str | Path) -> Path:
        """Write the file and its ``config.json`` into ``folder`` (as ``musiczoo export`` does), each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder, {EXPORT_FILES[self.fmt]: lambda p: p.write_bytes(self.data),
                                  CONFIG_NAME: lambda p: p.write_text(self.config_text)})
        return folder / EXPORT_FILES[self.fmt]

    def embed_and_logits(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.run(audio.detach().cpu().float().numpy())
        return torch.from_numpy(embedding), torch.from_numpy(logits)

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        return self.embed_and_logits(audio)[1]

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def to(self, device):
        return self


def holds_export(folder: Path) -> bool:
    """Whether ``folder`` holds an exported file (``model.onnx`` or ``model.pt``)."""
    return any((Path(folder) / name).is_file() for name in EXPORT_FILES.values())


def load_exported(path: str | Path, *, threads: int | None = None) -> ExportedModel:
    """An exported ``.onnx`` or ``.pt`` file (or the folder holding ``model.onnx``/``model.pt``), ready to run."""
    path, fmt = _exported_file(path)
    return load_exported_bytes(path.read_bytes(), fmt, None, path, threads=threads)


def read_exported_spec(path: str | Path) -> ModelSpec:
    """The spec of an exported file (or its folder) from the ``config.json`` beside it: no runtime loaded."""
    return _exported_spec(None, _exported_file(path)[0])[0]


def _exported_file(path: str | Path) -> tuple[Path, str]:
    """The exported file ``path`` names (itself, or the ``model.onnx``/``model.pt`` in it) and its format."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = [path / name for name in EXPORT_FILES.values() if (path / name).is_file()]
        if not found:
            raise ModelError(f"{path}: no {' or '.join(EXPORT_FILES.values())}; export one with musiczoo export MODEL {path}")
        path = found[0]
    if not path.is_file():
        raise ModelError(f"{path}: no such exported model file")
    fmt = {".onnx": "onnx", ".pt": "torchscript"}.get(path.suffix)
    if fmt is None:
        raise ModelError(f"{path}: not an exported model (a .onnx or .pt file written by musiczoo export)")
    return path, fmt


def load_exported_bytes(data: bytes, fmt: str, spec: ModelSpec | None, path: Path, *,
                        threads: int | None = None) -> ExportedModel:
    if fmt == "onnx":
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 (any failure to load is one line naming the file)
            raise ModelError(f"{path}: not a usable ONNX model ({one_line(e)})") from None
        text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        run = lambda audio: session.run(OUTPUT_NAMES, {"audio": audio})
    else:
        files = {CONFIG_NAME: ""}
        try:
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=files).eval()
        except Exception as e:  # noqa: BLE001 (any failure to load is one line naming the file)
            raise ModelError(f"{path}: not a usable TorchScript model ({one_line(e)})") from None
        text = files[CONFIG_NAME] or None

        def run(audio):
            with torch.inference_mode():
                return [t.numpy() for t in module(torch.from_numpy(audio))]
    if spec is None:
        spec, text = _exported_spec(text, path)
    return ExportedModel(spec, run, path, data, fmt, text)


def _exported_spec(text: str | None, path: Path) -> tuple[ModelSpec, str]:
    """The spec inside the file, else the ``config.json`` beside it, and its JSON text."""
    if text:
        try:
            config = json.loads(text)
        except ValueError:
            raise ModelError(f"{path}: its embedded {CONFIG_NAME} is not valid JSON") from None
        source = f"{path} (embedded {CONFIG_NAME})"
    else:
        beside = path.parent / CONFIG_NAME
        config = read_json(beside, ModelError, missing=f"{path}: holds no musiczoo spec and there is no {beside}")
        source, text = beside, json.dumps(config, indent=2) + "\n"
    if not isinstance(config, dict):
        raise ModelError(f"{source}: must hold a JSON object")
    return ModelSpec.from_config(config, source), text


__all__ = ["EXPORT_FILES", "ExportedModel", "holds_export", "load_exported", "read_exported_spec", "require"]
