"""Last step of `make demo`: vocode the held-out demo clips through the CLI, as a user would.

    python data/demo_synth.py MODEL_DIR OUT_DIR

For each validation clip of data/demo (the files the demo recipe held out of training) it runs `audiodiff mel`
and `audiodiff synth` twice: with the bundled speech vocoder (no --model) and with MODEL_DIR, the tiny model the
demo just trained. It scores both against Griffin-Lim on the same mels and prints where the wav files are.
The demo clips are espeak-ng speech, a voice neither model was trained on.
"""

import subprocess
import sys
from pathlib import Path

from audiodiff.audio.io import load_audio, save_audio
from audiodiff.config import load_recipe
from audiodiff.data import split_files
from audiodiff.eval.copysynth import griffin_lim
from audiodiff.eval.metrics import reference_distance
from audiodiff.vocoder import Vocoder

model, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
recipe = load_recipe("recipes/demo.yaml")
_, held_out = split_files(recipe.data.path, None, recipe.data.valid_files)
voc = Vocoder.from_pretrained(model, device="cpu")
cli = [sys.executable, "-m", "audiodiff"]
print(f"\n{'clip':<28}{'bundled':>9}{'demo-trained':>14}{'griffin-lim':>13}   (reference distance, lower is better)")
for clip in held_out:
    mel, wav = out / f"{clip.stem}.npy", out / f"{clip.stem}-bundled.wav"
    subprocess.run(cli + ["mel", str(clip), str(mel)], check=True, capture_output=True)
    subprocess.run(cli + ["synth", str(mel), str(wav), "--device", "cpu"], check=True, capture_output=True)
    tiny = out / f"{clip.stem}-demo-trained.wav"
    subprocess.run(cli + ["synth", str(mel), str(tiny), "--model", str(model), "--device", "cpu"], check=True,
                   capture_output=True)
    ref, sr = load_audio(clip, voc.sample_rate)
    gl = griffin_lim(voc.mel(ref).numpy(), voc.mel_config)
    save_audio(out / f"{clip.stem}-griffinlim.wav", gl, sr)
    save_audio(out / f"{clip.stem}-original.wav", ref, sr)
    scores = [reference_distance(ref, load_audio(w)[0]) for w in (wav, tiny)] + [reference_distance(ref, gl)]
    print(f"{clip.stem:<28}{scores[0]:>9.3f}{scores[1]:>14.3f}{scores[2]:>13.3f}")
print(f"\nwav files (original, bundled, demo-trained, griffin-lim) are in {out.resolve()}/")
