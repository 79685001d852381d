"""``audiodiff eval`` and ``audiodiff tune-schedule``: copy-synthesis scores of models (and baselines) on a folder of
recordings, and the search of a few-step variance schedule for a model, scored the same way."""

from __future__ import annotations

from pathlib import Path

import click

from audiodiff import atomic
from audiodiff.cli.options import SEED, max_batch_option, precision_option, refine_options, sampling_options


def _system_name(model: str, taken) -> str:
    """``model``'s name in eval's tables: its folder's name (``default`` for the bundled model), ``NAME#2`` ... when
    taken, as by a model given twice or one named like a baseline."""
    base = "default" if model == "default" else (Path(model).name or model)
    name, i = base, 1
    while name in taken or name in ("griffinlim", "refine", "original"):
        i += 1
        name = f"{base}#{i}"
    return name


@click.command("eval")
@click.argument("models", nargs=-1, required=True, metavar="MODEL... DATA_DIR")
@click.argument("data_dir", type=click.Path(path_type=Path), metavar="")
@sampling_options
@click.option("--limit", type=click.IntRange(min=0), default=16, show_default=True,
              help="First N files in sorted order (0: all).")
@click.option("--baseline", "baselines", type=click.Choice(["griffinlim", "refine"]), multiple=True,
              help="Also score this baseline on the first model's mels (repeatable): griffinlim, or refine (the "
                   "mel-consistency refinement started from noise instead of the network's output).")
@click.option("--fast", is_flag=True, help="Spectral distances only (skip MCD, F0, PESQ, STOI).")
@click.option("--full-band", is_flag=True, help="Score the whole band even for recordings made at a lower rate "
              "than the model's [default: limit outputs to the recording's band].")
@refine_options
@max_batch_option
@precision_option
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


@click.command("tune-schedule")
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
