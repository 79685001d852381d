"""Search short variance schedules for few-step vocoding (WaveGrad, Chen et al. 2021, sec. 3.3: a grid search
over betas scored against ground truth; here a coordinate search in log-beta, which needs far fewer trials).

Start from the default ``fast`` schedule for N steps, then repeatedly scale one beta at a time by a few factors,
keeping a candidate only if it lowers the mean reference distance (``eval.metrics.reference_distance``) of the
copy-synthesised validation clips, all with the same noise seed. ``artifacts.store_tuned_schedule`` records the
result in the model directory.
"""

from __future__ import annotations

import numpy as np

from audiodiff.audio.io import load_audio
from audiodiff.data.files import find_audio_files
from audiodiff.diffusion.plan import fast_betas
from audiodiff.errors import AudiodiffError, check_count
from audiodiff.eval.metrics import reference_distance

FACTORS = (0.5, 0.7, 1.4, 2.0)


def load_clips(vocoder, data, clips: int = 8, seconds: float = 2.0) -> list[np.ndarray]:
    """The middle ``seconds`` of the first ``clips`` files of ``data`` (sorted), at the model's rate."""
    check_count("clips", clips)
    if not seconds > 0:
        raise AudiodiffError(f"seconds must be above 0, got {seconds!r}")
    out = []
    for path in find_audio_files(data)[:clips]:
        audio, _ = load_audio(path, vocoder.sample_rate)
        n = int(seconds * vocoder.sample_rate)
        start = max(0, (len(audio) - n) // 2)
        out.append(audio[start:start + n])
    return out


def score(vocoder, clips, betas, seed: int = 0) -> float:
    """Mean reference distance of copy-synthesis with the ``fast`` sampler on ``betas``."""
    if not len(clips):
        raise AudiodiffError("no clips to score the schedule on; pass at least one validation recording")
    dists = []
    for ref in clips:
        est = vocoder(vocoder.mel(ref).cpu().numpy(), sampler="fast", betas=betas, seed=seed)
        dists.append(reference_distance(ref, est))
    return float(np.mean(dists))


def search(vocoder, clips, steps: int, passes: int = 2, log=print) -> tuple[list[float], float, float]:
    """Best betas for ``steps`` steps; returns ``(betas, best_score, start_score)``."""
    check_count("steps", steps)
    check_count("passes", passes)
    best = fast_betas(steps)
    best_score = start_score = score(vocoder, clips, best)
    log(f"start {np.round(best, 5).tolist()}: {start_score:.4f}")
    for p in range(passes):
        improved = False
        for i in range(steps):
            for factor in FACTORS:
                cand = list(best)
                cand[i] = min(0.999, cand[i] * factor)
                if any(b >= a for a, b in zip(cand[1:], cand[:-1])):  # keep betas increasing
                    continue
                try:
                    s = score(vocoder, clips, cand)
                except AudiodiffError:  # noisier than the training schedule reaches
                    continue
                if s < best_score - 1e-4:
                    best, best_score, improved = cand, s, True
                    log(f"pass {p + 1}, beta[{i}] x{factor}: {best_score:.4f}")
        if not improved:
            break
    return best, best_score, start_score

