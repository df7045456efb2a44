"""The mark that a dataset folder holds generated audio, not recorded music.

The synthetic generators write it into the dataset root; the data modules read it into their
provenance, so every result, checkpoint and model card made from such data says it was
synthetic, whatever the folder is called.
"""

from __future__ import annotations

import os
from pathlib import Path

SYNTHETIC_MARKER = "SYNTHETIC_DATA.txt"


def mark_synthetic(root: str | os.PathLike, what: str) -> None:
    Path(root, SYNTHETIC_MARKER).write_text(f"{what}\nGenerated audio, not recorded music: results on it test the pipeline only.\n")


def is_synthetic(root: str | os.PathLike) -> bool:
    """Whether ``root`` (or its parent, when root points at e.g. ``genres_original``) holds the marker."""
    root = Path(root).expanduser()
    return (root / SYNTHETIC_MARKER).is_file() or (root.parent / SYNTHETIC_MARKER).is_file()
