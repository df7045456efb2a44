"""Shared fixtures: synthetic GTZAN trees in both real layouts, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.synthetic import make_synthetic_gtzan

# Short, low-rate clips: the layout and the names are what these trees are for.
TREE_SECONDS, TREE_RATE = 1.0, 8000


@pytest.fixture(scope="session")
def tree_rate() -> int:
    """Sample rate of the GTZAN trees below."""
    return TREE_RATE


@pytest.fixture(scope="session")
def gtzan_rerelease(tmp_path_factory) -> Path:
    """``genres_original/<g>/<g>.000NN.wav``, 100 per genre, with the re-release's empty
    ``jazz.00054.wav``. Returns the dataset root (the folder above ``genres_original``)."""
    root = tmp_path_factory.mktemp("gtzan_rerelease")
    data = make_synthetic_gtzan(root, seconds=TREE_SECONDS, sample_rate=TREE_RATE, layout="genres_original")
    (data / "jazz" / "jazz.00054.wav").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def gtzan_original(tmp_path_factory) -> Path:
    """``genres/<g>/<g>.000NN.au``, 100 per genre, as in the original tarball."""
    root = tmp_path_factory.mktemp("gtzan_original")
    make_synthetic_gtzan(root, seconds=TREE_SECONDS, sample_rate=TREE_RATE, layout="genres")
    return root
