"""``musiczoo VERB ...``: dispatch to the verb's module, and the exit policy.

The toolkit's own errors end as one line ``musiczoo <verb>: error: ...`` with exit status 2;
this is the only module that turns errors into exit statuses.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from importlib import import_module

import yaml

from .common import ERROR_STATUS, VERBOSE_ENV, CommandError, quiet_lightning, verbose_by_env

#: The verbs beside LightningCLI's, as ``module:function`` of this package, imported when run:
#: Lightning takes seconds to import, which ``--help`` and the verbs that do not train need not pay.
EXTRA = {"models": "models:cmd_models", "synth": "data:cmd_synth", "quickstart": "train:cmd_quickstart",
         "publish": "models:cmd_publish", "export": "models:cmd_export",
         "index": "recommend:cmd_index", "recommend": "recommend:cmd_recommend",
         "recommend-eval": "bench:cmd_recommend_eval", "serve": "recommend:cmd_serve",
         "download": "data:cmd_download", "verify": "data:cmd_verify",
         "bench": "bench:cmd_bench", "leaderboard": "bench:cmd_leaderboard"}


def _command(target: str):
    module, function = target.split(":")
    return getattr(import_module(f".{module}", __package__), function)


class _NeverRaised(Exception):
    """Stands in for a Lightning exception while Lightning is not imported: nothing can have raised it."""


def _lightning_error(name: str) -> type[BaseException]:
    """Lightning's exception class ``name``, if a verb has imported Lightning (else nothing raised it)."""
    module = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return getattr(module, name) if module is not None else _NeverRaised


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
    try:
        if argv and argv[0] in EXTRA:
            command, args = _command(EXTRA[argv[0]]), argv[1:]
        elif is_file_predict(argv):
            command, args = _command("models:cmd_predict"), argv[1:]
        else:
            command, args = _command("train:run_lightning_cli"), argv
        _informational_logs_to_stdout()  # after the verb's module is imported: Lightning adds its handlers on import
        command(args)
    except _lightning_error("SIGTERMException"):  # Lightning stops on SIGTERM with SystemExit(None), i.e. "success"
        from ..resume import PREEMPTED_STATUS

        print(f"musiczoo{' ' + verb if verb else ''}: stopped by SIGTERM after saving last.ckpt; "
              "run the same command with --ckpt_path last to resume", file=sys.stderr)
        sys.exit(PREEMPTED_STATUS)
    except CommandError as e:
        _exit(str(e), verbose)
    except (ValueError, OSError, yaml.YAMLError, _lightning_error("MisconfigurationException")) as e:  # toolkit and Lightning set-up errors
        cause = _root_cause(e)
        _exit(f"musiczoo{' ' + verb if verb else ''}: error: {str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__}", verbose)
    finally:
        sys.argv = program_args


def _exit(line: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    print(line, file=sys.stderr)
    sys.exit(ERROR_STATUS)

