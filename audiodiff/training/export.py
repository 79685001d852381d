"""Turn a training run (resumable checkpoint) into an inference artefact (EMA weights + config.json)."""

from __future__ import annotations

from pathlib import Path

from audiodiff import artifacts, atomic
from audiodiff.config import recipe_from_dict
from audiodiff.errors import AudiodiffError
from audiodiff.factory import build_backbone
from audiodiff.families import family_of
from audiodiff.training.checkpoint import load_checkpoint, load_latest


def export(run_dir: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None,
           fp16: bool = False, vocoder: str | Path | None = None, weights: str = "ema") -> Path:
    """Write the EMA weights of the newest (or the given) checkpoint of ``run_dir`` as a model directory
    (a ``Vocoder``, or a ``MelGenerator`` for a unet2d run, with the run's class names). ``vocoder``: an exported
    vocoder with the generator's mel settings, copied into ``out_dir/vocoder`` as its paired vocoder. An earlier
    export at ``out_dir`` is replaced whole, atomically (``atomic.replacing_dir``). ``weights="model"`` takes the
    trained weights instead of their EMA (to measure what the EMA buys, bench/quality.py --weights)."""
    from audiodiff.vocoder import Vocoder

    if weights not in ("ema", "model"):
        raise AudiodiffError(f"weights must be 'ema' or 'model', got {weights!r}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.resolve() == run_dir.resolve():
        raise AudiodiffError("the export directory must differ from the run directory")
    atomic.check_writable(out_dir, "model directory", directory=True, owned=artifacts.ENTRIES)
    if checkpoint is not None:
        state, path = load_checkpoint(Path(checkpoint)), Path(checkpoint)
    else:
        state, path = load_latest(run_dir)
    if state is None:
        raise AudiodiffError(f"no checkpoint in {run_dir}/checkpoints; train first with `audiodiff train`")
    recipe = recipe_from_dict(state["recipe"])
    family = family_of(recipe.model)
    if vocoder is not None and not family.makes_mels:
        raise AudiodiffError("--vocoder pairs a vocoder with a spectrogram generator; this run is a vocoder")
    net = build_backbone(recipe.model, recipe.mel)
    net.load_state_dict(state["ema"]["model"] if weights == "ema" else state["model"])
    names = run_dir / "classes.txt"
    classes = names.read_text().splitlines() if names.is_file() else None
    artefact = family.artefact(net, recipe, classes)  # a Vocoder, or a MelGenerator for a unet2d run
    if vocoder is None:
        artefact.save_pretrained(out_dir, fp16=fp16)
        return out_dir
    voc = Vocoder.from_pretrained(vocoder, device="cpu")
    artefact.check_vocoder(voc, vocoder)  # before anything is written
    with atomic.replacing_dir(out_dir, "model directory", artifacts.ENTRIES) as tmp:  # the pair, whole or not
        artefact.save_pretrained(tmp, fp16=fp16)
        voc.save_pretrained(tmp / artifacts.PAIRED_VOCODER, fp16=fp16)
    return out_dir
