"""The ``musiczoo`` command: one module per group of verbs.

``train`` (fit, validate, test, predict --config, quickstart: LightningCLI), ``data`` (synth,
download, verify), ``models`` (models, publish, predict MODEL FILES), ``recommend`` (index,
recommend, serve), ``bench`` (bench, leaderboard, recommend-eval: the only modules of ``zoo``
that reach ``benchmarks``), ``main`` (dispatch and the exit policy), ``common`` (one-line errors).
"""

from .main import main

__all__ = ["main"]
