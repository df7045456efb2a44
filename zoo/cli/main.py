"""``musiczoo VERB ...``: dispatch to the verb's module, and the exit policy.

The toolkit's own errors end as one line ``musiczoo <verb>: error: ...`` with exit status 2;
this is the only module that turns errors into exit statuses.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import yaml
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from .bench import cmd_bench, cmd_leaderboard, cmd_recommend_eval
from .common import ERROR_STATUS, VERBOSE_ENV, CommandError, quiet_lightning, verbose_by_env
from .data import cmd_download, cmd_synth, cmd_verify
from .models import cmd_export, cmd_models, cmd_predict, cmd_publish
from .recommend import cmd_index, cmd_recommend, cmd_serve
from .train import build_cli, check_config_files, cmd_quickstart

EXTRA = {"models": cmd_models, "synth": cmd_synth, "quickstart": cmd_quickstart, "publish": cmd_publish, "export": cmd_export,
         "index": cmd_index, "recommend": cmd_recommend, "recommend-eval": cmd_recommend_eval, "serve": cmd_serve,
         "download": cmd_download, "verify": cmd_verify,
         "bench": cmd_bench, "leaderboard": cmd_leaderboard}


def is_file_predict(argv: list[str]) -> bool:
    """``musiczoo predict MODEL FILES...`` (positional, or after ``--runtime``) rather than LightningCLI's
    ``predict --config``."""
    return len(argv) > 1 and argv[0] == "predict" and (not argv[1].startswith("-") or argv[1].startswith("--runtime"))


def _informational_logs_to_stdout() -> None:
    """Lightning's notes ("Restoring states from the checkpoint ...", the model summary) are not
    errors; on stdout they leave stderr to warnings and errors."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)


def _root_cause(error: BaseException) -> BaseException:
    """The error the user can act on: jsonargparse wraps a data module's own ValueError in its own."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def main(argv: list[str] | None = None) -> None:
    """Run a verb. The toolkit's own errors (bad names, values, data roots, config files, caches,
    models, libraries) end as one line ``musiczoo <verb>: error: ...`` with exit status 2;
    ``--verbose`` or ``MUSICZOO_VERBOSE=1`` shows the traceback too, and all of Lightning's notes
    (:func:`~zoo.cli.common.quiet_lightning` leaves out those that say nothing about the run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv or verbose_by_env()
    argv = [a for a in argv if a != "--verbose"]
    verb = argv[0] if argv and not argv[0].startswith("-") else ""
    program_args, sys.argv = sys.argv, sys.argv[:1]  # the arguments go to LightningCLI explicitly
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # and to the processes a verb starts (bench's cells)
    else:
        quiet_lightning()
    _informational_logs_to_stdout()
    try:
        if argv and argv[0] in EXTRA:
            EXTRA[argv[0]](argv[1:])
        elif is_file_predict(argv):
            cmd_predict(argv[1:])
        else:
            check_config_files(argv)
            build_cli(argv)
    except SIGTERMException:  # Lightning stops on SIGTERM with SystemExit(None), i.e. "success"
        from ..resume import PREEMPTED_STATUS

        print(f"musiczoo{' ' + verb if verb else ''}: stopped by SIGTERM after saving last.ckpt; "
              "run the same command with --ckpt_path last to resume", file=sys.stderr)
        sys.exit(PREEMPTED_STATUS)
    except CommandError as e:
        _exit(str(e), verbose)
    except (ValueError, OSError, yaml.YAMLError, MisconfigurationException) as e:  # toolkit and Lightning set-up errors
        cause = _root_cause(e)
        _exit(f"musiczoo{' ' + verb if verb else ''}: error: {str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__}", verbose)
    finally:
        sys.argv = program_args


def _exit(line: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    print(line, file=sys.stderr)
    sys.exit(ERROR_STATUS)

