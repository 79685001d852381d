"""``audiodiff data manifest``: list a corpus's audio files with their lengths once, for training on it lazily."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("manifest")
@click.argument("data_path", metavar="DATA", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it [default: DATA/manifest.tsv, or beside a file list].")
@click.option("--speaker", type=click.Choice(["prefix", "parent"]),
              help="Fill the speaker column: file-name part before the first '_', or the file's folder name.")
@click.option("--mels", is_flag=True, help="Fill the mel column (training from pairs, data.pairs): the acoustic-model "
              "mel NAME.npy beside each audio file NAME.wav.")
@click.option("--mel-path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Fill the mel column from this folder: DIR/SUB/NAME.npy for DATA/SUB/NAME.wav, else DIR/NAME.npy.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def manifest(data_path, output, speaker, mels, mel_path, no_progress):
    """Write a manifest of the audio files under DATA (a folder or a file list): path, length, sample rate,
    speaker. Train on it with data.manifest (or --data MANIFEST.tsv); see docs/data.md."""
    from audiodiff.data.files import find_audio_files
    from audiodiff.data.manifest import scan, write_manifest

    files = find_audio_files(data_path, hint="pass a folder of audio files or a file list")
    output = output or (data_path / "manifest.tsv" if data_path.is_dir() else data_path.with_suffix(".tsv"))
    listed = scan(files, speaker=speaker, progress=not no_progress)
    if not len(listed):
        from audiodiff.errors import AudiodiffError

        first = listed.skipped[0]
        raise AudiodiffError(f"none of the {len(files)} files under {data_path} is readable audio; first: "
                             f"{first[0]} ({first[1]})")
    if mels or mel_path is not None:
        import numpy as np

        from audiodiff.data.pairs import mel_paths

        root = data_path if data_path.is_dir() else data_path.parent
        listed.mels = np.array(mel_paths([listed.path(i) for i in range(len(listed))], mel_path, [root]), dtype=str)
    write_manifest(listed, output)
    for path, reason in listed.skipped:
        click.echo(f"skipped {path} ({reason})", err=True)
    click.echo(f"wrote {output}: {len(listed)} files, {listed.seconds / 3600:.2f} h"
               f"{f', {len(listed.skipped)} skipped' if listed.skipped else ''}; train with data.manifest: {output}")
