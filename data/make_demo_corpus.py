#!/usr/bin/env python3
"""Build the small synthetic speech corpus bundled with audiodiff (``data/demo/``).

The project ships a few minutes of *synthetic* English speech as its default
training data, so that the recipes and tests run out of the box without any
real recordings being committed to the repository.

Every clip is produced by the espeak-ng text-to-speech engine (formant
synthesis): no human voice is recorded anywhere in this corpus. The speech is
intelligible but robotic; it is good enough to smoke-test a vocoder (does the
loss go down, does the output sound like the input), not to train a vocoder
for quality.

What the script does:

1. Speaks a fixed list of English sentences (written for this project) with
   several espeak-ng voices and variants, at a randomly varied speaking rate
   (``-s``) and base pitch (``-p``), via ``espeak-ng -w tmp.wav``.
2. Loads each WAV with ``soundfile``, mixes to mono, resamples to 22050 Hz if
   needed (``soxr``, else ``librosa``; espeak-ng already renders at 22050 Hz,
   so this is normally a no-op), trims leading and trailing silence lightly,
   and peak-normalises to 0.9.
3. Keeps clips between 1.5 and 6 s and writes them as 16-bit mono FLAC files
   named ``spk-<voice>_<nnn>.flac`` until about ``--minutes`` of audio exist.

The output is deterministic for a given ``--seed`` (and espeak-ng version).
Existing ``spk-*.flac`` files in the output folder are removed first; other
files there (such as ``README.md``) are left alone.

Usage::

    python data/make_demo_corpus.py                    # -> data/demo/, ~3.5 min
    python data/make_demo_corpus.py --out /tmp/demo --minutes 2 --seed 1

Requires the ``espeak-ng`` program (Debian/Ubuntu: ``apt-get install espeak-ng``)
and the Python packages numpy, soundfile and soxr (or librosa).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 22050
MIN_SECONDS = 1.5
MAX_SECONDS = 6.0
PEAK = 0.9

# espeak-ng voice[+variant] names. Checked against espeak-ng 1.51: note that a
# variant appended to "en-gb" (e.g. "en-gb+f4") is silently ignored and gives
# plain en-gb, so British variants are written as "en+<variant>" ("en" is the
# British voice) or on a named accent such as en-gb-x-rp.
VOICES = [
    "en-us",             # American, male
    "en-us+f4",          # American, female variant
    "en-us-nyc+m7",      # New York City accent, male variant
    "en-gb-x-rp",        # Received Pronunciation, male
    "en-gb-x-rp+f2",     # Received Pronunciation, female variant
    "en+m3",             # British, male variant
    "en+f4",             # British, female variant
    "en-gb-scotland+f3",  # Scottish, female variant
]

# Speaking rate (words per minute, espeak-ng default 175) and base pitch
# (0-99, default 50) are drawn uniformly from these ranges for every clip.
RATE_RANGE = (140, 190)
PITCH_RANGE = (30, 70)

# Sentences written for this project (Harvard-sentence style, 6-13 words).
SENTENCES = [
    "The old boat drifted slowly toward the rocky shore.",
    "A warm breeze carried the smell of bread down the street.",
    "She kept the brass key in a small wooden box.",
    "The children painted the fence a bright shade of green.",
    "Heavy rain fell on the tin roof all night.",
    "He poured cold milk into a chipped blue cup.",
    "The clock in the hall struck nine and then stopped.",
    "A flock of geese passed high above the frozen lake.",
    "Fresh snow covered the path behind the barn.",
    "The baker sold the last loaf before noon.",
    "Two red apples rolled off the edge of the table.",
    "The lamp cast long shadows across the dusty floor.",
    "We waited an hour for the late train to arrive.",
    "The wind tore the paper kite from his hands.",
    "A thin layer of ice formed on the pond overnight.",
    "Please close the gate so the goats stay inside.",
    "The map was folded and tucked into a leather case.",
    "Her voice echoed through the empty stone church.",
    "The farmer mended the broken wheel with a length of rope.",
    "Bright sparks flew up from the blacksmith's anvil.",
    "The cat slept in a patch of afternoon sun.",
    "A small bell rang each time the shop door opened.",
    "The river rose quickly after the spring storms.",
    "He counted the coins twice before paying the driver.",
    "The garden smelled of mint and damp earth.",
    "Thick fog rolled in from the grey harbour.",
    "The teacher wrote the answer in large chalk letters.",
    "A loud knock woke the whole house at dawn.",
    "The soup was too hot to taste right away.",
    "Six tall pines stood at the top of the hill.",
    "The little dog chased its tail around the yard.",
    "She tied the parcel with a piece of yellow string.",
    "The sailor told stories about distant islands.",
    "Dry leaves crackled under our boots in the forest.",
    "The jar of honey sat on the highest shelf.",
    "A sudden gust blew out every candle in the room.",
    "The road curved sharply past the old mill.",
    "He sharpened the pencil with a tiny silver knife.",
    "The kettle whistled just as the guests arrived.",
    "Wild flowers grew along the edge of the railway line.",
    "The radio played a quiet tune in the kitchen.",
    "Our neighbour lent us a ladder to reach the gutter.",
    "The museum opens at ten on weekday mornings.",
    "A narrow bridge crossed the stream near the school.",
    "The tailor measured the sleeve with great care.",
    "Smoke curled slowly from the cottage chimney.",
    "The ship's horn sounded twice in the thick mist.",
    "They planted rows of beans beside the stone wall.",
    "The glass vase shattered on the marble floor.",
    "A tired horse pulled the cart up the steep lane.",
    "The letter arrived three weeks after it was sent.",
    "Fish swam lazily beneath the green lily pads.",
    "The judge asked the witness to speak more clearly.",
    "A copper pot hung from a hook above the stove.",
    "The market was crowded with people buying fruit.",
    "He whistled a cheerful tune while he fixed the bike.",
    "The moon rose orange over the quiet valley.",
    "Her scarf was knitted from soft blue wool.",
    "The workers lifted the heavy beam into place.",
    "A single crow sat on the telephone wire.",
    "The recipe calls for two cups of flour and an egg.",
    "Waves crashed against the harbour wall all afternoon.",
    "The boy found a smooth white pebble on the beach.",
    "Dust drifted through the beam of the old projector.",
    "The captain checked the compass before setting sail.",
    "Warm light spilled from the windows of the inn.",
    "The pages of the book were brittle and yellow.",
    "A long queue formed outside the new bakery.",
    "The drummer kept a steady beat for the dancers.",
    "Frost made delicate patterns on the window glass.",
    "The orchard was full of ripe pears in September.",
    "She hummed softly while she folded the laundry.",
    "The hikers rested beside a clear mountain spring.",
    "Bees hovered over the purple heather on the moor.",
    "The old piano was badly out of tune.",
    "He carried the firewood in from the shed.",
    "The lighthouse beam swept across the dark water.",
    "Each morning the postman whistled as he walked.",
    "The puzzle had a thousand tiny pieces.",
    "A quick rinse will clean the paint from the brush.",
    "The owl called twice from the top of the oak tree.",
    "Rain dripped steadily from the edge of the umbrella.",
]


def sanitise(voice: str) -> str:
    """Voice name -> file-name-safe token (lowercase letters, digits, hyphens)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", voice.lower())).strip("-")


def speak(espeak: str, voice: str, text: str, rate: int, pitch: int, wav: Path) -> tuple[np.ndarray, int]:
    """Synthesise ``text`` with espeak-ng into ``wav``; return (mono float32 audio, sample rate)."""
    cmd = [espeak, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), text]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()}")
    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def resample(audio: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample to ``target`` Hz with soxr (preferred) or librosa; no-op if already there."""
    if sr == target:
        return audio
    try:
        import soxr

        return soxr.resample(audio, sr, target, quality="HQ").astype(np.float32)
    except ImportError:
        import librosa

        return librosa.resample(audio, orig_sr=sr, target_sr=target).astype(np.float32)


def trim(audio: np.ndarray, sr: int, top_db: float = 40.0, pad_s: float = 0.05) -> np.ndarray:
    """Lightly trim leading/trailing silence: cut where 10 ms frames stay ``top_db`` below
    the loudest frame, keeping ``pad_s`` of margin on each side."""
    frame = max(1, int(0.010 * sr))
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -top_db)[0]
    if len(loud) == 0:
        return audio[:0]
    pad = int(pad_s * sr)
    start = max(0, loud[0] * frame - pad)
    end = min(len(audio), (loud[-1] + 1) * frame + pad)
    return audio[start:end]


def write_flac(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit mono FLAC at maximum compression (if this soundfile supports the option)."""
    try:
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC", compression_level=1.0)
    except TypeError:  # soundfile < 0.12 has no compression_level
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")


def check_voices(espeak: str, tmp: Path) -> None:
    """Fail if two configured voices render identically (a silently ignored variant)."""
    seen: dict[str, str] = {}
    for voice in VOICES:
        audio, _ = speak(espeak, voice, "Testing one two three.", 175, 50, tmp / "probe.wav")
        digest = hashlib.sha1(audio.tobytes()).hexdigest()
        if digest in seen:
            sys.exit(f"error: espeak-ng voices {seen[digest]!r} and {voice!r} sound identical; "
                     "pick another voice/variant in VOICES")
        seen[digest] = voice


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description="Generate the synthetic espeak-ng speech corpus bundled with audiodiff.")
    parser.add_argument("--out", type=Path, default=here / "demo",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=3.5,
                        help="approximate total duration to generate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed for sentence/voice/rate/pitch choices (default: %(default)s)")
    args = parser.parse_args(argv)

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("error: espeak-ng not found; install it with `apt-get install espeak-ng`")
    if args.minutes <= 0:
        sys.exit("error: --minutes must be positive")

    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("spk-*.flac"):
        old.unlink()

    target_s = args.minutes * 60.0
    total_s = 0.0
    n_bytes = 0
    counts = {v: 0 for v in VOICES}
    skipped = 0
    index = 0

    with tempfile.TemporaryDirectory(prefix="demo-corpus-") as tmpdir:
        tmp = Path(tmpdir)
        check_voices(espeak, tmp)
        round_no = 0
        while total_s < target_s:
            # One round = every sentence once, in a seeded order; voices rotate so
            # each voice gets an equal share and a sentence changes voice per round.
            order = rng.permutation(len(SENTENCES))
            produced_this_round = 0
            for k, s_idx in enumerate(order):
                if total_s >= target_s:
                    break
                voice = VOICES[(k + round_no) % len(VOICES)]
                rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
                pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
                audio, sr = speak(espeak, voice, SENTENCES[s_idx], rate, pitch, tmp / "tmp.wav")
                audio = trim(resample(audio, sr), SAMPLE_RATE)
                dur = len(audio) / SAMPLE_RATE
                peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
                if not (MIN_SECONDS <= dur <= MAX_SECONDS) or peak < 1e-4:
                    skipped += 1
                    continue
                audio = audio * (PEAK / peak)
                index += 1
                path = out / f"spk-{sanitise(voice)}_{index:03d}.flac"
                write_flac(path, audio)
                total_s += dur
                n_bytes += path.stat().st_size
                counts[voice] += 1
                produced_this_round += 1
            if produced_this_round == 0:
                sys.exit("error: no clip fell within the 1.5-6 s limits; check espeak-ng")
            round_no += 1

    print(f"wrote {index} files to {out}")
    print(f"  {total_s / 60:.2f} minutes, {n_bytes / 1e6:.2f} MB, {SAMPLE_RATE} Hz mono 16-bit FLAC"
          f" ({skipped} clips skipped for length)")
    for voice, n in counts.items():
        print(f"  spk-{sanitise(voice)}: {n} clips ({voice})")
    if n_bytes > 10e6:
        print("warning: corpus exceeds 10 MB, too large to commit; use a smaller --minutes",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
