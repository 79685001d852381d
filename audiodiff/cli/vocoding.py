"""``audiodiff mel`` and ``audiodiff synth``: audio to a .npy mel, and a .npy mel to audio through a vocoder.

The checks of their files live here too: an output that is the input, and what ``synth`` was given instead of a
.npy mel (an audio file, a zip, a text file), each refused with one line that says what to do.
"""

from __future__ import annotations

from pathlib import Path

import click

from audiodiff import atomic
from audiodiff.cli.options import SEED, max_batch_option, precision_option, refine_options, sampling_options
from audiodiff.errors import AudiodiffError

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


@click.command()
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


@click.command()
@click.argument("mel_in", metavar="MEL.npy", type=click.Path(path_type=Path))
@click.argument("wav_out", metavar="OUT.wav", type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path),
              help="Exported model directory (from `audiodiff export`) [default: the bundled speech-22k "
                   "vocoder, hifigan mel].")
@sampling_options
@precision_option
@click.option("--no-graphs", is_flag=True, help="Do not replay CUDA graphs on a GPU (debugging).")
@refine_options
@max_batch_option
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
