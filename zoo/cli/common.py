"""What every verb shares: its one-line errors, the exit statuses, the list of verbs, and
which of Lightning's notes a run shows."""

from __future__ import annotations

import logging
import os
import re
import warnings

EXTRA_VERBS = """extra commands:
  musiczoo models [PATTERN] [--pretrained]   list the model zoo (parameter counts) or published weights
  musiczoo synth gtzan|mtat|deam OUT         write a synthetic dataset in the real on-disk layout
  musiczoo quickstart [--out DIR]            synthetic GTZAN -> train resnet_gru on mel (CPU) -> test
  musiczoo publish CKPT OUT_DIR              checkpoint -> model.safetensors + config.json + model card
  musiczoo predict MODEL AUDIO_OR_DIR ...    genres/tags of your own audio files (--runtime onnx: an exported file)
  musiczoo export MODEL OUT [--format onnx|torchscript]   one file, front-end inside (pip install -e '.[export]')
  musiczoo index MODEL [MODEL ...] MUSIC_DIR --out LIBRARY     embed a music folder for recommendation
  musiczoo recommend LIBRARY --track ID | --audio FILE | --like ID ID ... | --duplicates
  musiczoo recommend-eval LIBRARY [LIBRARY ...] --dataset gtzan|mtat  score recommendations vs baselines
  musiczoo serve LIBRARY [--port 8765]       the listening room: a local web page (pip install -e '.[web]')
  musiczoo download gtzan|mtat --root DIR    download, check and unpack a real dataset, then verify it
  musiczoo verify gtzan|mtat --root DIR      is a copy complete and usable? (counts, every file decoded)
  musiczoo bench GRID.yaml [--slurm SCRIPT]  every dataset x architecture x transform x seed, resumable
  musiczoo leaderboard RESULTS... --out leaderboard.md   mean +- std matrices, transform comparison, heatmaps
  (`musiczoo predict --config ...` is LightningCLI's predict over a data module)"""


#: Exit status of a command that stopped on an error (argparse uses it for bad arguments too).
ERROR_STATUS = 2


#: Set to 1 to see the traceback behind a one-line error (also ``--verbose`` on any verb).
VERBOSE_ENV = "MUSICZOO_VERBOSE"


def verbose_by_env() -> bool:
    """``MUSICZOO_VERBOSE`` set to anything but empty or 0."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


class CommandError(SystemExit):
    """An error already worded for the user: ``musiczoo <verb>: error: <message>``.

    A ``SystemExit``, so a verb called from Python ends like a command (the message on
    stderr); ``main`` prints it as one line with exit status 2.
    """

    def __init__(self, verb: str, message: str):
        super().__init__(f"musiczoo {verb}: error: {message}")

    def __str__(self) -> str:
        return str(self.code)


def fail(verb: str, message: str):
    raise CommandError(verb, message)


#: Lightning's notes that say nothing about the run at hand, each named in full: the machine's
#: accelerators, promotion, the note that the task's own checkpoint callbacks
#: (``MusicTask.configure_callbacks``) replace the trainer's default ``ModelCheckpoint`` or, in a
#: test after a fit (``quickstart``), their own earlier copies (by design), an internal step, and
#: the seed (the run's first line names it). Everything else Lightning says (model summary,
#: progress bars, results, restoring a checkpoint, why a fit stopped) is still shown.
LIGHTNING_NOTES = re.compile("|".join([
    r"(GPU|TPU|HPU) available: .*",
    r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: .*",
    r"💡 Tip: .*",
    r"The following callbacks returned in `LightningModule\.configure_callbacks` will override existing "
    r"callbacks passed to Trainer: (LastCheckpoint|ModelCheckpoint|LastCheckpoint, ModelCheckpoint)",
    r"Loading `train_dataloader` to estimate number of stepping batches\.",
    r"(\[rank: \d+\] )?Seed set to \d+",
]), re.DOTALL)
#: The loggers that write those notes (``rank_zero_info`` logs through one of the first two).
LIGHTNING_NOTE_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                          "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda")


def _not_a_lightning_note(record: logging.LogRecord) -> bool:
    return LIGHTNING_NOTES.fullmatch(record.getMessage()) is None


def quiet_lightning() -> None:
    """Leave out Lightning's notes of :data:`LIGHTNING_NOTES`, so a run prints what it runs, its
    progress and its results, and an error is the only line. A filter on the loggers that write
    them (not on a handler), so it holds however logging is configured; the CLI installs it
    unless ``--verbose`` or ``MUSICZOO_VERBOSE=1`` asks for all of Lightning's output."""
    for name in LIGHTNING_NOTE_LOGGERS:
        logging.getLogger(name).addFilter(_not_a_lightning_note)  # addFilter adds it once
    # Without TensorBoard installed Lightning warns on every run that it logs to CSV instead: the
    # documented default here (lightning_logs/version_N/metrics.csv), not a problem.
    warnings.filterwarnings("ignore", message=r".*`tensorboardX` has been removed as a dependency.*")
