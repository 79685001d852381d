"""The ``audiodiff`` command line: a thin click group; each command builds a config and calls one function.

Errors the user can fix print one line (``error: ...``) and exit 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from audiodiff import atomic
from audiodiff.errors import AudiodiffError
from audiodiff.inference import options as synthesis  # no torch: choices and defaults of the inference options

log = logging.getLogger("audiodiff")
SEED = click.IntRange(0, 2**63 - 1)
# The first bytes of files that people give synth instead of a .npy mel.
MAGIC = ((b"RIFF", "a WAV audio file"), (b"fLaC", "a FLAC audio file"), (b"OggS", "an Ogg audio file"),
         (b"ID3", "an MP3 audio file"), (b"\xff\xfb", "an MP3 audio file"), (b"\xff\xf3", "an MP3 audio file"),
         (b"FORM", "an AIFF audio file"))


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (same path, a symbolic or a hard link)."""
    import os

    return a.exists() and b.exists() and os.path.samefile(a, b)


def _load_mel(path: Path):
    import numpy as np

    if not path.is_file():
        raise AudiodiffError(f"{path}: no such file; give a .npy mel saved by `audiodiff mel` or np.save")
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise AudiodiffError(f"{path}: the file is empty (0 bytes); give a .npy mel saved by `audiodiff mel` or "
                             f"np.save")
    kind = next((name for magic, name in MAGIC if head.startswith(magic)), None)
    if kind is not None:
        raise AudiodiffError(f"{path} is {kind}, not a mel; make its mel with `audiodiff mel {path} MEL.npy` "
                             f"(or pass --model MODEL to use a model's mel settings), then synth MEL.npy")
    if head.startswith(b"PK\x03\x04"):
        raise AudiodiffError(f"{path} is a zip archive (np.savez?), not one .npy array; save the mel with np.save")
    if not head.startswith(b"\x93NUMPY") and _is_text(head):
        raise AudiodiffError(f"{path} is a text file, not a .npy mel; save mels with np.save (a text array loads "
                             f"with np.loadtxt)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise AudiodiffError(f"{path}: not a numpy .npy array ({str(err)[:80]}); save mels with np.save") from None


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # possibly cut inside a character at byte 512: judge what came before
        text = head[:-4].decode("utf-8", errors="replace")
    return "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n\f" for c in text)


class _SamplerChoice(click.Choice):
    """``click.Choice`` of ``diffusion.SAMPLERS``, read when first needed (parsing, help) rather than at import:
    the samplers' module imports torch, which would add seconds to every command's start."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        from audiodiff.diffusion import SAMPLERS

        return tuple(sorted(SAMPLERS))

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns the (empty) tuple given above
        pass


def _sampling_options(command):
    """``--steps`` and ``--sampler`` of synth, eval and generate: this run's, over the model's own."""
    command = click.option("--sampler", type=_SamplerChoice(),
                           help="Sampler (docs/samplers.md) [default: the model's].")(command)
    return click.option("--steps", type=click.IntRange(min=1), help="Sampling steps [default: the model's].")(command)


def _precision_option(command):
    """``--precision`` of synth and eval (``SynthesisOptions.precision``)."""
    return click.option("--precision", type=click.Choice(synthesis.PRECISIONS), default="auto", show_default=True,
                        help="auto: bf16 on a GPU, fp32 on the CPU. fp32 on a GPU is the slow reference path.")(command)


def _max_batch_option(command):
    """``--max-batch``: how many chunks of a long mel synth and eval run at once (``Vocoder.max_batch``)."""
    mb = synthesis.MAX_BATCH
    return click.option(
        "--max-batch", type=click.IntRange(min=1),
        help=f"Mel chunks ({synthesis.CHUNK_FRAMES} frames) synthesised at once; peak memory grows with it, about "
             f"0.8 GiB a chunk for the bundled model on the CPU [default: {mb['cuda']} on a GPU, {mb['cpu']} on "
             f"the CPU].")(command)


def _refine_options(command):
    """``--refine`` and ``--refine-momentum``: the mel-consistency refinement of synth and eval."""
    command = click.option(
        "--refine-momentum", type=click.FloatRange(0, 1, max_open=True),
        help=f"Momentum of the refinement iterations, as in fast Griffin-Lim (0: plain) [default: the model's, "
             f"else {synthesis.REFINE_MOMENTUM}].")(command)
    return click.option(
        "--refine", type=click.IntRange(min=0),
        help=f"Mel-consistency iterations after sampling (0: the raw diffusion output) [default: the model's, else "
             f"{synthesis.REFINE_ITERATIONS}].")(command)


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


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--data", "data", type=click.Path(path_type=Path), help="Audio folder (recursive) or file list; "
              "overrides data.path and $AUDIODIFF_DATA.")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Where checkpoints, logs and config.yaml go "
              "[default: runs/<recipe name>]. An existing run there is resumed.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value, e.g. --set train.batch_size=8 (repeatable).")
@click.option("--init", "init", metavar="MODEL_DIR|pretrained",
              help="Fine-tune: start from an exported model's weights (same model and mel settings) or from the "
                   "bundled vocoder; same as --set train.init=...")
@click.option("--device", help="cpu, cuda or cuda:N [default: cuda if available].")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def train(recipe: Path, data, run_dir, overrides, init, device, no_progress):
    """Train (or resume) a model from a YAML RECIPE.

    Checkpoints are written atomically every train.checkpoint_every steps; run the same command again to
    resume after an interruption. Ctrl-C saves a checkpoint before exiting. TensorBoard logs are in
    RUN_DIR/logs (validation audio and spectrograms included).
    """
    from audiodiff.config import load_recipe
    from audiodiff.training import train as run_training

    extra = list(overrides) + ([f"data.path={data}"] if data else []) + ([f"train.init={init}"] if init else [])
    cfg = load_recipe(recipe, extra)
    run_dir = run_dir or Path("runs") / recipe.stem
    last = run_training(cfg, run_dir, device=device, progress=not no_progress)
    click.echo(f"done: checkpoint {last}; export it with `audiodiff export {run_dir} OUT_DIR`")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), help="A specific checkpoint [default: newest].")
@click.option("--fp16", is_flag=True, help="Store the weights in half precision (half the size).")
@click.option("--vocoder", type=click.Path(path_type=Path),
              help="Spectrogram generators only: an exported vocoder with the same mel settings, stored as the "
                   "generator's paired vocoder (OUT_DIR/vocoder), which `audiodiff generate` uses by default.")
def export(run_dir, out_dir, checkpoint, fp16, vocoder):
    """Export the EMA weights of a training run as a model directory (config.json + model.safetensors)."""
    from audiodiff.training import export as run_export

    click.echo(f"exported {run_export(run_dir, out_dir, checkpoint, fp16, vocoder)}")


@cli.command()
@click.argument("audio_in", metavar="IN_AUDIO", type=click.Path(path_type=Path))
@click.argument("mel_out", metavar="OUT.npy", type=click.Path(path_type=Path))
@click.option("--preset", default="hifigan", show_default=True, help="Mel convention: hifigan or diffwave.")
@click.option("--model", type=click.Path(path_type=Path), help="Use this model's mel settings instead of --preset.")
def mel(audio_in, mel_out, preset, model):
    """Compute the log-mel spectrogram [n_mels, frames] of an audio file and save it as .npy."""
    import numpy as np
    import torch

    from audiodiff import artifacts
    from audiodiff.audio.io import load_audio, save_mel
    from audiodiff.audio.mel import MelSpectrogram, mel_config

    if _same_file(audio_in, mel_out):
        raise AudiodiffError(f"output {mel_out} is the input file; choose another output path")
    atomic.check_writable(mel_out, "mel")
    cfg = artifacts.read_recipe(model, weights=False)[1].mel if model is not None else mel_config(preset)
    audio, _ = load_audio(audio_in, cfg.sample_rate)
    if not np.isfinite(audio).all():
        raise AudiodiffError(f"{audio_in}: audio contains NaN or infinite samples; expected finite samples in "
                             f"[-1, 1] (re-export it, e.g. as 16-bit PCM)")
    m = MelSpectrogram(cfg)(torch.from_numpy(audio)).numpy().astype(np.float32)
    save_mel(mel_out, m)
    click.echo(f"wrote {mel_out}: [{m.shape[0]} bands, {m.shape[1]} frames] at {cfg.sample_rate} Hz")


@cli.command()
@click.argument("mel_in", metavar="MEL.npy", type=click.Path(path_type=Path))
@click.argument("wav_out", metavar="OUT.wav", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path),
              help="Exported model directory (from `audiodiff export`) [default: the bundled speech-22k "
                   "vocoder, hifigan mel].")
@_sampling_options
@_precision_option
@click.option("--no-graphs", is_flag=True, help="Do not replay CUDA graphs on a GPU (debugging).")
@_refine_options
@_max_batch_option
@click.option("--no-mel-check", is_flag=True,
              help="Vocode the mel even if its values do not fit the model's mel convention (dB, log10, [0, 1] "
                   "or linear mels are refused by default).")
@click.option("--device", help="cpu, cuda or cuda:N [default: cuda if available].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Noise seed (same seed, same output).")
def synth(mel_in, wav_out, model, steps, sampler, precision, no_graphs, refine, refine_momentum, max_batch,
          no_mel_check, device, seed):
    """Vocode a mel-spectrogram [n_mels, frames] saved as .npy into a 16-bit wav file."""
    from audiodiff.audio.io import save_audio
    from audiodiff.vocoder import Vocoder

    if _same_file(mel_in, wav_out):
        raise AudiodiffError(f"output {wav_out} would overwrite the input; give a .wav path")
    if wav_out.suffix.lower() not in (".wav", ".flac"):
        raise AudiodiffError(f"output {wav_out}: synth writes audio; give a path ending in .wav or .flac")
    atomic.check_writable(wav_out, "audio file")
    mel_arr = _load_mel(mel_in)
    voc = Vocoder.from_pretrained(model, device=device, sampler=sampler, steps=steps, precision=precision,
                                  graphs=not no_graphs, refine=refine, refine_momentum=refine_momentum,
                                  max_batch=max_batch, check_mel_range=not no_mel_check)
    wav = voc(mel_arr, seed=seed)
    if wav.ndim != 1:
        raise AudiodiffError("synth writes one file: give a single mel [n_mels, frames], not a batch")
    save_audio(wav_out, wav, voc.sample_rate)
    click.echo(f"wrote {wav_out}: {len(wav) / voc.sample_rate:.2f} s at {voc.sample_rate} Hz")


def _system_name(model: str, taken) -> str:
    """``model``'s name in eval's tables: its folder's name (``default`` for the bundled model), ``NAME#2`` ... when
    taken, as by a model given twice or one named like a baseline."""
    base = "default" if model == "default" else (Path(model).name or model)
    name, i = base, 1
    while name in taken or name in ("griffinlim", "refine", "original"):
        i += 1
        name = f"{base}#{i}"
    return name


@cli.command("eval")
@click.argument("models", nargs=-1, required=True, metavar="MODEL... DATA_DIR")
@click.argument("data_dir", type=click.Path(path_type=Path), metavar="")
@_sampling_options
@click.option("--limit", type=click.IntRange(min=0), default=16, show_default=True,
              help="First N files in sorted order (0: all).")
@click.option("--baseline", "baselines", type=click.Choice(["griffinlim", "refine"]), multiple=True,
              help="Also score this baseline on the first model's mels (repeatable): griffinlim, or refine (the "
                   "mel-consistency refinement started from noise instead of the network's output).")
@click.option("--fast", is_flag=True, help="Spectral distances only (skip MCD, F0, PESQ, STOI).")
@click.option("--full-band", is_flag=True, help="Score the whole band even for recordings made at a lower rate "
              "than the model's [default: limit outputs to the recording's band].")
@_refine_options
@_max_batch_option
@_precision_option
@click.option("--out", type=click.Path(path_type=Path), help="Write the JSON report here (and a .csv beside it).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="Keep the audio and write a listening page, REPORT/index.html (static, relative links).")
@click.option("--device", help="cpu, cuda or cuda:N.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Draws the sampler's noise and the baselines' initial phase or noise; F0 RMSE varies with it, so "
              "compare means over a few seeds.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def eval_cmd(models, data_dir, steps, sampler, limit, baselines, fast, full_band, refine, refine_momentum, max_batch,
             precision, out, report_dir, device, seed, no_progress):
    """Copy-synthesis evaluation of each MODEL on the recordings in DATA_DIR (the last argument; `default`
    names the bundled model).

    Each file's mel (the model's preset) is vocoded and compared with the original: the reference distance
    of docs/benchmarks.md, multi-resolution STFT, log-mel L1, MCD, F0 RMSE (cents), V/UV error, and PESQ/STOI
    when installed (pip install audiodiff[metrics]). Means with 95% confidence intervals per system, and each
    system minus the first, file by file, with a paired 95% t-interval: `audiodiff eval A B DATA` is an
    ablation. Files that cannot be read are skipped and listed at the end (and under "skipped" in the JSON report).
    """
    from audiodiff.eval.copysynth import evaluate_systems, format_summary, write_report
    from audiodiff.eval.report import ClipWriter, write_html
    from audiodiff.vocoder import Vocoder

    if out:
        atomic.check_writable(out, "eval report")
    if report_dir:
        atomic.check_writable(report_dir / "index.html", "eval report page")
    vocoders = {}
    for model in map(str, models):
        vocoders[_system_name(model, vocoders)] = Vocoder.from_pretrained(
            None if model == "default" else Path(model), device=device, max_batch=max_batch, refine=refine,
            refine_momentum=refine_momentum, precision=precision)
    report = evaluate_systems(vocoders, data_dir, baselines=baselines, steps=steps, sampler=sampler,
                              limit=limit or None, full=not fast, seed=seed, match_bandwidth=not full_band,
                              progress=not no_progress, keep=ClipWriter(report_dir) if report_dir else None)
    click.echo(format_summary(report))
    if report_dir:
        write_html(report, report_dir)
        click.echo(f"wrote {report_dir / 'index.html'}")
    if out:
        write_report(report, out)
        click.echo(f"wrote {out}")


@cli.command("tune-schedule")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Validation recordings (never the test set you report on).")
@click.option("--steps", type=click.IntRange(min=1), default=6, show_default=True,
              help="Number of sampling steps to tune for.")
@click.option("--clips", type=click.IntRange(min=1), default=8, show_default=True, help="How many files to score on.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds from the middle of each.")
@click.option("--passes", type=click.IntRange(min=1), default=2, show_default=True, help="Coordinate-search passes.")
@click.option("--device", help="cpu, cuda or cuda:N.")
def tune_schedule(model, data, steps, clips, seconds, passes, device):
    """Search a STEPS-step variance schedule for MODEL and store it in MODEL/config.json.

    Afterwards `audiodiff synth --steps STEPS` (fast sampler) uses the tuned schedule automatically.
    """
    from audiodiff import artifacts
    from audiodiff.eval import schedule_search as ss
    from audiodiff.vocoder import Vocoder

    voc = Vocoder.from_pretrained(model, device=device)
    artifacts.check_updatable(model)
    clip_list = ss.load_clips(voc, data, clips, seconds)
    betas, best, start = ss.search(voc, clip_list, steps, passes, log=click.echo)
    artifacts.store_tuned_schedule(model, steps, betas)
    click.echo(f"stored {steps}-step schedule {[round(b, 6) for b in betas]} in {model}/config.json "
               f"(distance {start:.4f} -> {best:.4f})")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(min=1), default=4, show_default=True, help="How many samples.")
@click.option("--class", "label", help="Class name or index (digits: 0-9; music: piano, strings, ...) "
              "[default: unconditional].")
@click.option("--guidance", type=float, default=1.0, show_default=True,
              help="Classifier-free guidance scale (1: none, 0: unconditional, >1: stronger).")
@_sampling_options
@click.option("--frames", type=click.IntRange(min=1), help="Mel frames per sample (a waveform model: frames x hop "
              "samples) [default: the U-Net's tile width; a waveform model's training crop].")
@click.option("--vocoder", "vocoder_path",
              help="An exported vocoder with the same mel settings, or griffinlim [default: the model's paired "
                   "vocoder (audiodiff export --vocoder), else griffinlim].")
@click.option("--device", help="cpu, cuda or cuda:N.")
@click.option("--seed", type=SEED, default=0, show_default=True)
def generate(model, out_dir, count, label, guidance, sampler, steps, frames, vocoder_path, device, seed):
    """Generate samples with a MODEL that needs no input, and write wav + PNG files to OUT_DIR: a U-Net's mels,
    vocoded, or an unconditional or class-conditional waveform model's audio (and its mel picture)."""
    from audiodiff.audio.io import save_audio
    from audiodiff.audio.mel import MelSpectrogram
    from audiodiff.audio.plot import mel_png
    from audiodiff.eval.copysynth import griffin_lim
    from audiodiff.melgen import MelGenerator, paired_vocoder
    from audiodiff.vocoder import Vocoder

    atomic.check_writable(out_dir / "sample_000.wav", "audio file")  # creates out_dir
    gen = _load_generator(model, device)
    makes_mels = isinstance(gen, MelGenerator)  # else a WaveGenerator, which makes the audio itself
    voc = None
    if makes_mels:
        if vocoder_path is None:
            vocoder_path = paired_vocoder(model) or "griffinlim"
            if vocoder_path == "griffinlim":
                click.echo(f"{model} has no paired vocoder: using Griffin-Lim (pair one with "
                           f"`audiodiff export RUN OUT --vocoder VOCODER`, or pass --vocoder)")
        if str(vocoder_path) != "griffinlim":
            voc = Vocoder.from_pretrained(vocoder_path, device=device)
            gen.check_vocoder(voc, vocoder_path)
    elif vocoder_path is not None:
        raise AudiodiffError(f"{model} is a waveform model, which needs no vocoder; drop --vocoder")
    if label is not None:
        name, label = label, gen.label(label)
    labels = [label] * count if label is not None else None
    samples = gen(labels, batch=count, frames=frames, steps=steps, sampler=sampler, guidance=guidance, seed=seed)
    to_mel = None if makes_mels else MelSpectrogram(gen.mel_config).to(samples.device)
    title = f"class {name}, guidance {guidance}" if label is not None else "unconditional"
    for i, sample in enumerate(samples):
        if makes_mels:
            mel_i = sample
            wav = voc(mel_i, seed=seed + i) if voc is not None else griffin_lim(mel_i.cpu().numpy(), gen.mel_config)
        else:
            wav, mel_i = sample.cpu().numpy(), to_mel(sample)
        stem = out_dir / f"sample_{i:03d}"
        save_audio(stem.with_suffix(".wav"), wav, gen.mel_config.sample_rate)
        atomic.write_bytes(stem.with_suffix(".png"), mel_png(mel_i, title), "spectrogram picture")
    click.echo(f"wrote {count} wav and png files to {out_dir}")


def _load_generator(model: Path, device):
    """The generator that MODEL's directory holds, by its recorded format and model section: a ``MelGenerator``
    (U-Net export) or, for a waveform model without mel input (unconditional or class-conditional), a
    ``WaveGenerator``; a mel vocoder is refused by ``WaveGenerator`` with a line saying to use synth."""
    from audiodiff import artifacts
    from audiodiff.melgen import FORMAT as MEL_FORMAT, MelGenerator
    from audiodiff.wavegen import WaveGenerator

    cfg, _ = artifacts.read_recipe(model, weights=False)
    if cfg["format"] == MEL_FORMAT:
        return MelGenerator.from_pretrained(model, device=device)
    return WaveGenerator.from_pretrained(model, device=device)


@cli.group()
def data():
    """Prepare training data sets (render-music: synthetic music from the music21 corpus)."""


@data.command("render-music")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--pieces", type=click.IntRange(min=1), default=200, show_default=True, help="How many scores.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Clip length.")
@click.option("--clips", type=click.IntRange(min=0), default=30, show_default=True,
              help="At most this many clips per piece, so long movements do not dominate (0: all).")
@click.option("--rate", type=click.IntRange(min=1000), default=22050, show_default=True,
              help="Sample rate of the written files (the recipe's mel.sample_rate).")
@click.option("--seed", type=int, default=0, show_default=True, help="Picks the pieces and instruments.")
@click.option("--soundfont", type=click.Path(path_type=Path),
              help="A General MIDI .sf2 [default: TimGM6mb from pretty_midi].")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def render_music(out_dir, pieces, seconds, clips, rate, seed, soundfont, no_progress):
    """Render music21 corpus scores through a GM soundfont into FLAC clips FAMILY_PIECE_k.flac in OUT_DIR.

    Each piece is played by one instrument family (piano, organ, strings, winds, brass, ...), so
    data.labels: prefix can condition on it. OUT_DIR also gets manifest.csv and README.md (sources, soundfont
    and licences). Needs pip install 'audiodiff[music]'.
    """
    from audiodiff.data.prepare.music import render_corpus

    written = render_corpus(out_dir, n_pieces=pieces, seconds=seconds, sample_rate=rate, seed=seed,
                            clips_per_piece=clips, soundfont=soundfont, progress=not no_progress)
    click.echo(f"wrote {len(written)} clips ({len(written) * seconds / 60:.1f} min) from {pieces} pieces to "
               f"{out_dir}; train with --data {out_dir}")


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
    from audiodiff.training.loop import Interrupted

    try:
        code = cli.main(args=args, prog_name="audiodiff", standalone_mode=False)
    except click.exceptions.Abort as err:  # click has printed the blank line
        click.echo("interrupted" if isinstance(err.__cause__, KeyboardInterrupt) else "aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except Interrupted as err:
        click.echo(f"interrupted: {err}", err=True)
        sys.exit(130)
    except AudiodiffError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except Exception as err:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        click.echo(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                   f"(rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
