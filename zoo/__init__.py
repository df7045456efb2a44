"""musiczoo: music genre classification and tagging models that take raw audio.

The public API is importable from the package root, e.g. ``from zoo import from_pretrained``.
Names are resolved on first use, so ``import zoo.frontends`` does not pay for importing
Lightning or the Hugging Face client.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("musiczoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_API = {
    "create_model": "registry", "list_models": "registry", "register_model": "registry",
    "from_pretrained": "hub", "save_pretrained": "hub", "publish": "hub", "push_to_hub": "hub",
    "load_checkpoint": "hub", "list_pretrained": "hub", "register_pretrained": "hub", "PretrainedEntry": "hub",
    "predict_files": "predict", "load_audio": "predict",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
