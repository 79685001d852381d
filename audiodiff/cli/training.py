"""``audiodiff train`` and ``audiodiff export``: train (or resume) a run from a recipe, export its EMA weights."""

from __future__ import annotations

from pathlib import Path

import click

from audiodiff.cli.options import sampling_options


@click.command()
@click.argument("recipe", metavar="RECIPE|NAME", type=click.Path(path_type=Path))
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
    """Train (or resume) a model from a YAML RECIPE, or the bundled recipe NAME (`audiodiff recipes` lists them).

    Checkpoints are written atomically every train.checkpoint_every steps; run the same command again to
    resume after an interruption. Ctrl-C saves a checkpoint before exiting. TensorBoard logs are in
    RUN_DIR/logs (validation audio and spectrograms included).
    """
    from audiodiff import recipebook
    from audiodiff.config import load_recipe
    from audiodiff.training import train as run_training

    extra = list(overrides) + ([f"data.path={data}"] if data else []) + ([f"train.init={init}"] if init else [])
    recipe = recipebook.resolve(recipe)
    cfg = load_recipe(recipe, extra)
    run_dir = run_dir or Path("runs") / recipe.stem
    last = run_training(cfg, run_dir, device=device, progress=not no_progress)
    if last is not None:  # None: a process other than rank 0 of a distributed run
        click.echo(f"done: checkpoint {last}; export it with `audiodiff export {run_dir} OUT_DIR`")


@click.command()
@click.argument("run_dir", metavar="RUN_DIR|MODEL", type=click.Path(path_type=Path))
@click.argument("out_dir", metavar="OUT_DIR|OUT.onnx", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), help="A specific checkpoint [default: newest].")
@click.option("--fp16", is_flag=True, help="Store the weights in half precision (half the size).")
@click.option("--weights", type=click.Choice(["ema", "model"]), default="ema", show_default=True,
              help="Which weights: the EMA (what to ship) or the raw weights of the last step (to compare them).")
@click.option("--vocoder", type=click.Path(path_type=Path),
              help="Spectrogram generators only: an exported vocoder with the same mel settings, stored as the "
                   "generator's paired vocoder (OUT_DIR/vocoder), which `audiodiff generate` uses by default.")
@sampling_options
def export(run_dir, out_dir, checkpoint, fp16, weights, vocoder, steps, sampler):
    """Export the EMA weights of a training run as a model directory (config.json + model.safetensors).

    With an OUT path ending in .onnx, write instead the sampling of the vocoder model directory MODEL (`default`:
    the bundled one) as one ONNX graph with a dynamic length, for onnxruntime or TensorRT: inputs mel and noise,
    output the raw waveform (no refinement); --steps and --sampler fix its sampling. See docs/deployment.md.
    """
    if out_dir.suffix.lower() == ".onnx":
        from audiodiff.errors import AudiodiffError
        from audiodiff.inference.onnx import export_onnx
        from audiodiff.vocoder import Vocoder

        if checkpoint or fp16 or vocoder or weights != "ema":
            raise AudiodiffError("--checkpoint, --fp16, --weights and --vocoder export training runs; an ONNX export takes a "
                                 "model directory and --steps/--sampler only")
        voc = Vocoder.from_pretrained(None if str(run_dir) == "default" else run_dir, device="cpu")
        click.echo(f"exported {export_onnx(voc, out_dir, steps=steps, sampler=sampler)}")
        return
    if steps is not None or sampler is not None:
        from audiodiff.errors import AudiodiffError

        raise AudiodiffError("--steps and --sampler apply to an ONNX export (OUT.onnx); a model directory keeps the "
                             "run's settings (change them at synthesis: synth --steps, --sampler)")
    from audiodiff.training import export as run_export

    click.echo(f"exported {run_export(run_dir, out_dir, checkpoint, fp16, vocoder, weights=weights)}")
