"""musiczoo: music genre classification and tagging models that take raw audio.

The public API is importable from the package root, e.g. ``from zoo import from_pretrained``.
Names are resolved on first use, so ``import zoo.frontends`` does not pay for importing
the Hugging Face client, and nothing outside ``zoo.task`` and ``zoo.cli`` imports Lightning.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("musiczoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_API = {
    "create_model": ".factory", "list_models": ".factory", "from_pretrained": ".factory",
    "register_model": ".registry",
    "save_pretrained": ".hub", "push_to_hub": ".hub",
    "load_checkpoint": ".checkpoint", "publish": ".checkpoint",
    "list_pretrained": ".pretrained", "register_pretrained": ".pretrained", "PretrainedEntry": ".pretrained",
    "predict_files": ".predict", "export_model": ".export", "load_exported": ".exported", "load_audio": "datamodules.primitives.audio",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
