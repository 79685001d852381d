"""``audiodiff data``: the group of commands that prepare training data sets (``render-music``: synthetic music
rendered from the music21 corpus)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
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
