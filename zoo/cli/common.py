"""What every verb shares: its one-line errors, the exit statuses and the list of verbs."""

from __future__ import annotations

EXTRA_VERBS = """extra commands:
  musiczoo models [PATTERN] [--pretrained]   list the model zoo (parameter counts) or published weights
  musiczoo synth gtzan|mtat OUT              write a synthetic dataset in the real on-disk layout
  musiczoo quickstart [--out DIR]            synthetic GTZAN -> train resnet_gru on mel (CPU) -> test
  musiczoo publish CKPT OUT_DIR              checkpoint -> model.safetensors + config.json + model card
  musiczoo predict MODEL AUDIO_OR_DIR ...    genres/tags of your own audio files
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

