"""``audiodiff mel`` and ``audiodiff synth``: audio to a .npy mel, and .npy mels (one, or a folder or list of them)
to audio through a vocoder.

An output that is the input is refused here; what ``synth`` was given instead of a .npy mel (an audio file, a zip,
a text file) is refused by ``inference/files.py``, which also vocodes folders.
"""

from __future__ import annotations

from pathlib import Path

import click

from audiodiff import atomic
from audiodiff.cli.options import SEED, max_batch_option, precision_option, refine_options, sampling_options
from audiodiff.errors import AudiodiffError
from audiodiff.inference.files import BATCH, load_mel


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (same path, a symbolic or a hard link)."""
    import os

    return a.exists() and b.exists() and os.path.samefile(a, b)


# The preset names, written out: importing audio/ would import torch, which `audiodiff --help` must not wait for
# (tests/test_convert.py checks that the list is mel.PRESETS).
PRESET_NAMES = ("hifigan", "diffwave", "espnet", "coqui", "nemo", "bigvgan-22k", "bigvgan-24k", "speechbrain")
PRESET_HELP = f"Mel convention: {', '.join(PRESET_NAMES)} (docs/interop.md; `audiodiff mel --list-presets`)."


def mel_settings(preset: str, settings, stats: Path | None = None):
    """The ``MelConfig`` of ``preset`` with ``key=value`` settings (YAML values; ``mel.`` prefix optional) and, for
    ESPnet, the statistics of a ``feats_stats.npz``, validated as a recipe's mel section is."""
    from audiodiff.config import mel_values, recipe_from_dict

    values = mel_values(preset, settings)
    if stats is not None:
        from audiodiff.audio.presets import espnet_stats

        values.update(espnet_stats(stats))
    return recipe_from_dict({"mel": values}).mel


def _converted(mel_arr, preset: str, model_mel):
    """``mel_arr`` in ``preset``'s convention -> the model's (``audio/convert.py``), saying what was approximated."""
    from audiodiff.audio.convert import convert_mel, describe

    src = mel_settings(preset, ())
    out = convert_mel(mel_arr, src, model_mel)
    click.echo(describe(preset, "the model's convention", src, model_mel), err=True)
    return out


def _list_presets(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from audiodiff.audio.presets import INTEROP

    click.echo("hifigan      HiFi-GAN's meldataset.py (Tacotron 2, Glow-TTS, FastSpeech 2): ln, 0-8 kHz (default)")
    click.echo("diffwave     the reference DiffWave preprocess.py: dB mapped to [0, 1]")
    for name, preset in INTEROP.items():
        click.echo(f"{name:<12} {preset.summary}")
    ctx.exit()


@click.command()
@click.argument("audio_in", metavar="IN_AUDIO", type=click.Path(path_type=Path))
@click.argument("mel_out", metavar="OUT.npy", type=click.Path(path_type=Path))
@click.option("--preset", default="hifigan", show_default=True, help=PRESET_HELP)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change one setting of the preset, e.g. --set fmax=null or --set n_mels=100 (repeatable; the keys "
                   "of a recipe's mel section).")
@click.option("--stats", type=click.Path(path_type=Path, dir_okay=False),
              help="An ESPnet feats_stats.npz: normalise with its global mean and variance (ESPnet's GlobalMVN).")
@click.option("--model", type=click.Path(path_type=Path), help="Use this model's mel settings instead of --preset.")
@click.option("--list-presets", is_flag=True, expose_value=False, is_eager=True, callback=_list_presets,
              help="List the presets and exit.")
def mel(audio_in, mel_out, preset, settings, stats, model):
    """Compute the log-mel spectrogram [n_mels, frames] of an audio file and save it as .npy."""
    import numpy as np
    import torch

    from audiodiff import artifacts
    from audiodiff.audio.io import load_audio, save_mel
    from audiodiff.audio.mel import MelSpectrogram

    if _same_file(audio_in, mel_out):
        raise AudiodiffError(f"output {mel_out} is the input file; choose another output path")
    if model is not None and (settings or stats):
        raise AudiodiffError("--model uses the model's own mel settings; drop --set/--stats, or use --preset")
    atomic.check_writable(mel_out, "mel")
    cfg = artifacts.read_recipe(model, weights=False)[1].mel if model is not None else \
        mel_settings(preset, settings, stats)
    audio, _ = load_audio(audio_in, cfg.sample_rate)
    if not np.isfinite(audio).all():
        raise AudiodiffError(f"{audio_in}: audio contains NaN or infinite samples; expected finite samples in "
                             f"[-1, 1] (re-export it, e.g. as 16-bit PCM)")
    m = MelSpectrogram(cfg)(torch.from_numpy(audio)).numpy().astype(np.float32)
    save_mel(mel_out, m)
    click.echo(f"wrote {mel_out}: [{m.shape[0]} bands, {m.shape[1]} frames] at {cfg.sample_rate} Hz")


@click.command()
@click.argument("mel_in", metavar="MEL", type=click.Path(path_type=Path))
@click.argument("wav_out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path),
              help="Exported model directory (from `audiodiff export`) [default: the bundled speech-22k "
                   "vocoder, hifigan mel].")
@sampling_options
@precision_option
@click.option("--no-graphs", is_flag=True, help="Do not replay CUDA graphs on a GPU (debugging).")
@refine_options
@max_batch_option
@click.option("--batch", type=click.IntRange(min=1), default=BATCH, show_default=True,
              help="A folder or list: mels per vocoder call (sorted by length, so mels of one length run together).")
@click.option("--no-mel-check", is_flag=True,
              help="Vocode the mel even if its values do not fit the model's mel convention (dB, log10, [0, 1] "
                   "or linear mels are refused by default).")
@click.option("--device", help="cpu, cuda or cuda:N [default: cuda if available].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Noise seed (same seed, same output).")
@click.option("--no-progress", is_flag=True, help="A folder or list: no progress bar (for logs).")
@click.option("--mel-preset", metavar="NAME", help="The mel is in this preset's convention (e.g. espnet, coqui, "
              "nemo; `audiodiff mel --list-presets`): convert it to the model's first (docs/interop.md).")
def synth(mel_in, wav_out, model, steps, sampler, precision, no_graphs, refine, refine_momentum, max_batch, batch,
          no_mel_check, device, seed, no_progress, mel_preset):
    """Vocode a mel-spectrogram [n_mels, frames] saved as .npy into a 16-bit wav file OUT; or every .npy mel in a
    folder (recursive), or in a .txt list of paths, into one wav each in the folder OUT.

    \b
      audiodiff synth mel.npy out.wav
      audiodiff synth mels/ wavs/        # mels/a.npy -> wavs/a.wav, mels/x/b.npy -> wavs/x/b.wav
      audiodiff synth list.txt wavs/     # one .npy path per line (relative to the list's folder)
    Every file gets the noise that `synth FILE.npy OUT.wav --seed SEED` gives it.
    """
    from audiodiff.audio.io import save_audio
    from audiodiff.vocoder import Vocoder

    to_audio = wav_out.suffix.lower() in (".wav", ".flac")
    many = mel_in.is_dir() or (mel_in.suffix.lower() == ".txt" and not to_audio)  # a folder, or a list into one
    if _same_file(mel_in, wav_out):
        raise AudiodiffError(f"output {wav_out} would overwrite the input; give a .wav path")
    if many and to_audio:
        raise AudiodiffError(f"output {wav_out}: {mel_in} holds several mels; give a folder for their wav files")
    if not many and not to_audio:
        raise AudiodiffError(f"output {wav_out}: synth writes audio; give a path ending in .wav or .flac")
    if many:
        atomic.check_writable(wav_out / "probe.wav", "audio file")  # creates the folder
    else:
        atomic.check_writable(wav_out, "audio file")
        mel_arr = load_mel(mel_in)
    voc = Vocoder.from_pretrained(model, device=device, sampler=sampler, steps=steps, precision=precision,
                                  graphs=not no_graphs, refine=refine, refine_momentum=refine_momentum,
                                  max_batch=max_batch, check_mel_range=not no_mel_check)
    convert = None
    if mel_preset is not None:
        convert = lambda arr: _converted(arr, mel_preset, voc.mel_config)  # noqa: E731
    if many:
        from audiodiff.inference.files import vocode_files

        written = vocode_files(voc, mel_in, wav_out, seed=seed, batch=batch, progress=not no_progress,
                               convert=convert)
        click.echo(f"wrote {len(written)} wav files to {wav_out} at {voc.sample_rate} Hz")
        return
    if convert is not None:
        mel_arr = convert(mel_arr)
    wav = voc(mel_arr, seed=seed)
    if wav.ndim != 1:
        if wav.shape[0] != 1:
            raise AudiodiffError("synth writes one file: give a single mel [n_mels, frames], not a batch")
        wav = wav[0]
    save_audio(wav_out, wav, voc.sample_rate)
    click.echo(f"wrote {wav_out}: {len(wav) / voc.sample_rate:.2f} s at {voc.sample_rate} Hz")
