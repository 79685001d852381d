"""``audiodiff generate``: samples from a model that needs no input, a U-Net's mels (vocoded by the paired vocoder,
another, or Griffin-Lim) or a waveform model's audio, written as wav files with a PNG of each one's mel."""

from __future__ import annotations

from pathlib import Path

import click

from audiodiff import atomic
from audiodiff.cli.options import SEED, sampling_options
from audiodiff.errors import AudiodiffError


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(min=1), default=4, show_default=True, help="How many samples.")
@click.option("--class", "label", help="Class name or index (digits: 0-9; music: piano, strings, ...) "
              "[default: unconditional].")
@click.option("--guidance", type=float, default=1.0, show_default=True,
              help="Classifier-free guidance scale (1: none, 0: unconditional, >1: stronger).")
@sampling_options
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
