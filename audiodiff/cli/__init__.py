"""The ``audiodiff`` command line: a thin click group; each command builds a config and calls one function.

Errors the user can fix print one line (``error: ...``) and exit 1; ``--debug`` shows the traceback instead.
This package holds the group, ``main`` and that error wording; the commands live in one module per group of them:
``training`` (train, export), ``vocoding`` (mel, synth), ``evaluation`` (eval, tune-schedule), ``generation``
(generate), ``datasets`` (data) and ``recipes`` (recipes), with the options they share in ``options``. None
imports torch at import time.
"""

from __future__ import annotations

import logging
import sys

import click

from audiodiff.cli.datasets import data
from audiodiff.cli.evaluation import eval_cmd, tune_schedule
from audiodiff.cli.generation import generate
from audiodiff.cli.manifest import manifest
from audiodiff.cli.recipes import recipes
from audiodiff.cli.training import export, train
from audiodiff.cli.vocoding import mel, synth
from audiodiff.errors import AudiodiffError

log = logging.getLogger("audiodiff")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="audiodiff")
def cli(debug: bool):
    """audiodiff: diffusion models for audio.

    \b
    Train a DiffWave vocoder on a folder of recordings, turn mel-spectrograms into waveforms, export models.
    Quick start:
      audiodiff train recipes/speech.yaml --data /path/to/wavs
      audiodiff export runs/speech my-vocoder
      audiodiff mel speech.wav mel.npy && audiodiff synth mel.npy out.wav --model my-vocoder
    """


for _command in (train, export, mel, synth, eval_cmd, tune_schedule, generate, data, recipes):
    cli.add_command(_command)
data.add_command(manifest)


def main(argv=None) -> None:
    """Console entry point: run the click group, turning user errors into one line and an exit code. Ctrl-C at any
    point, while torch is imported or a model loads too, prints one line and exits 130."""
    try:
        _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:  # before click runs the command (imports take seconds); a blank line ends the "^C"
        click.echo("\ninterrupted", err=True)
        sys.exit(130)


def _main(args: list[str]) -> None:
    debug = "--debug" in args
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s" if debug else "%(message)s")
    try:
        code = cli.main(args=args, prog_name="audiodiff", standalone_mode=False)
    except click.exceptions.Abort as err:  # click has printed the blank line
        click.echo("interrupted" if isinstance(err.__cause__, KeyboardInterrupt) else "aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except AudiodiffError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except Exception as err:  # an unexpected failure: still one line unless --debug
        if _interrupted(err):
            click.echo(f"interrupted: {err}", err=True)
            sys.exit(130)
        if debug:
            raise
        click.echo(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                   f"(rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted(err: Exception) -> bool:
    """Whether ``err`` is the training loop's ``Interrupted`` (a checkpoint was saved after SIGINT/SIGTERM): looked up
    only where the loop was imported, since importing it imports torch, which ``audiodiff --help`` must not."""
    loop = sys.modules.get("audiodiff.training.loop")
    return loop is not None and isinstance(err, loop.Interrupted)
