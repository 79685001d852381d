"""Listener-free evaluation of class-conditional spoken digits (``recipes/digits.yaml``): the benchmark
experiment behind bench/digits_classifier.py and bench/digits_eval.py, kept beside them and out of the package.

A small CNN is trained on the real recordings (file names ``DIGIT_SPEAKER_TAKE``); it then scores generated
clips in two ways, as in the class-conditional evaluations of WaveGAN (Donahue et al., 2019, "inception score" with
a digit classifier) and DiffWave (Kong et al., 2021, Sec. 5.3, accuracy and FID on SC09):

- accuracy: share of generated clips classified as the digit they were conditioned on (one number per guidance
  scale shows the fidelity side of the classifier-free guidance trade-off);
- Frechet distance between classifier embeddings of real and generated sets (Heusel et al., 2017, Eq. 6):
  ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, the diversity-and-fidelity side.

Input: a clip padded with silence or cropped to 1 s, turned into the log-mel of the recipe (64 bands, hop 64 at
8 kHz: 125 frames). The classifier owns that mel front end, so a saved classifier scores audio exactly as it was
trained, whatever recipe is current. Inside ``forward`` each log-mel is taken relative to its own peak, so the
classifier ignores loudness (generated clips are rarely at the level of the recordings).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from audiodiff import artifacts
from audiodiff.audio.io import load_audio
from audiodiff.audio.mel import MelConfig, MelSpectrogram, mel_config
from audiodiff.errors import AudiodiffError

# The mel section of recipes/digits.yaml (tests check that the two agree).
DIGITS_MEL = mel_config("hifigan", sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=64,
                        fmax=4000.0)
FORMAT = "audiodiff-digit-classifier"
CLIP_SECONDS = 1.0  # FSDD clips are 0.14-2.3 s, most under 1 s
DYNAMIC_RANGE = 10.0  # nats of log-mel kept below each clip's peak (about 87 dB)


def label_from_name(path: str | os.PathLike) -> int:
    """The digit in a ``DIGIT_SPEAKER_TAKE`` file name: the stem's first ``_``-separated field."""
    stem = Path(path).stem
    head = stem.split("_")[0]
    if not head.isdigit() or "_" not in stem:
        raise AudiodiffError(f"{Path(path).name}: cannot read a digit label; name files DIGIT_SPEAKER_TAKE "
                             f"(e.g. 7_george_3.wav), or DIGIT_*.wav for generated clips")
    return int(head)


class DigitClassifier(nn.Module):
    """Log-mel ``[B, n_mels, frames]`` -> logits ``[B, num_classes]``; ``embed`` gives the penultimate features.

    Four conv3x3-BN-ReLU-maxpool blocks (64x125 -> 4x7), averaging over time, one hidden layer of
    ``embed_dim`` (the Frechet-distance features), a linear head. Constructor arguments are the saved config.
    """

    def __init__(self, num_classes: int = 10, embed_dim: int = 128, channels: Sequence[int] = (16, 32, 64, 128),
                 dropout: float = 0.3, mel: MelConfig | dict = DIGITS_MEL, clip_seconds: float = CLIP_SECONDS):
        super().__init__()
        mel = MelConfig(**mel) if isinstance(mel, dict) else mel
        self.config = {"num_classes": num_classes, "embed_dim": embed_dim, "channels": list(channels),
                       "dropout": dropout, "mel": dataclasses.asdict(mel), "clip_seconds": clip_seconds}
        self.frontend = MelSpectrogram(mel)
        self.clip_samples = int(round(clip_seconds * mel.sample_rate))
        blocks, c_in = [], 1
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        bands = mel.n_mels // 2 ** len(channels)
        if bands < 1:
            raise AudiodiffError(f"{len(channels)} pooling blocks leave no mel band of {mel.n_mels}; "
                                 f"use at most {mel.n_mels.bit_length() - 1} channel entries")
        self.hidden = nn.Sequential(nn.Linear(c_in * bands, embed_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))

    def mels(self, audio: torch.Tensor) -> torch.Tensor:
        """Clips already fitted to ``clip_samples`` ``[B, T]`` -> log-mel ``[B, n_mels, frames]``."""
        return self.frontend(audio)

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, n_mels, frames]`` -> features ``[B, embed_dim]`` (after the hidden ReLU)."""
        peak = mel.amax(dim=(-2, -1), keepdim=True)
        x = (mel - peak).clamp(min=-DYNAMIC_RANGE) / (DYNAMIC_RANGE / 2) + 1  # [-1, 1], 1 at the peak
        x = self.features(x.unsqueeze(1))  # [B, C, n_mels / 16, frames / 16]
        # Average over time only: pitch and formants live at absolute frequencies, which a pool over frequency
        # would discard (tones of different pitch would look alike).
        return self.hidden(x.mean(dim=-1).flatten(1))  # [B, C * n_mels / 16] -> [B, embed_dim]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(mel))

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (no pickle) to ``directory`` (``artifacts.write``)."""
        return artifacts.write(directory, self.state_dict(), {"format": FORMAT, **self.config}, "digit classifier")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "DigitClassifier":
        """Rebuild a classifier written by ``save_pretrained``, in eval mode. Directories saved before the format
        tag was written (a config of constructor arguments only) load too."""
        fix = f"train one with bench/digits_classifier.py --out {directory}"
        cfg = artifacts.read_config(directory, None, "digit classifier", fix)
        fmt = cfg.pop("format", FORMAT)
        if fmt != FORMAT:
            raise AudiodiffError(f"{directory} is not a digit classifier (its format is {fmt!r}); {fix}")
        model = cls(**cfg)
        model.load_state_dict(artifacts.read_weights(directory))
        return model.eval()


def fit_clip(audio: torch.Tensor, length: int, offset: int | None = None) -> torch.Tensor:
    """Pad with silence or crop ``audio [T]`` to ``[length]``. ``offset``: where a short clip starts (or where a
    long one is cut); None centres it."""
    audio = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    spare = abs(length - audio.shape[0])
    start = spare // 2 if offset is None else min(max(offset, 0), spare)
    if audio.shape[0] >= length:
        return audio[start:start + length]
    out = audio.new_zeros(length)
    out[start:start + audio.shape[0]] = audio
    return out


def load_clips(files: Sequence[str | os.PathLike], sample_rate: int = DIGITS_MEL.sample_rate) -> list[np.ndarray]:
    """Mono float32 clips at ``sample_rate``, at their own lengths."""
    return [load_audio(f, sample_rate)[0] for f in files]


def holdout_split(files: Sequence[str | os.PathLike], by: str = "take", every: int = 5
                  ) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)``: every ``every``-th speaker or take (sorted) is held out, so no speaker (or no
    recording session) is in both sets; the same split whatever the file order."""
    field = {"speaker": 1, "take": 2}.get(by)
    if field is None:
        raise AudiodiffError(f"hold-out by {by!r} is not known; use 'speaker' or 'take'")
    files = [Path(f) for f in files]
    keys = []
    for f in files:
        parts = f.stem.split("_")
        if len(parts) < 3:
            raise AudiodiffError(f"{f.name}: expected DIGIT_SPEAKER_TAKE to hold out by {by}; rename the files")
        keys.append(parts[field])
    groups = sorted(set(keys), key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))  # takes numerically
    if len(groups) < 2:
        raise AudiodiffError(f"only one {by} ({groups[0]}) in the data; hold out by the other field")
    held = set(groups[::max(2, every)])
    return [f for f, k in zip(files, keys) if k not in held], [f for f, k in zip(files, keys) if k in held]


def _batch(model: DigitClassifier, clips, generator: torch.Generator | None = None,
           max_gain_db: float = 0.0) -> torch.Tensor:
    """Clips -> mels ``[B, n_mels, frames]``; with a generator, a random placement and gain per clip."""
    n = model.clip_samples
    out = []
    for clip in clips:
        offset = None
        if generator is not None:
            spare = abs(n - len(clip))
            offset = int(torch.randint(0, spare + 1, (1,), generator=generator))
            gain_db = float(torch.empty(1).uniform_(-max_gain_db, 0.0, generator=generator))
            clip = torch.as_tensor(clip) * 10 ** (gain_db / 20)
        out.append(fit_clip(clip, n, offset))
    return model.mels(torch.stack(out))


def _as_mels(model: DigitClassifier, audio_or_mels, batch_size: int):
    """Yield mel batches from a list of clips, audio ``[B, T]`` or mels ``[B, n_mels, frames]``."""
    if isinstance(audio_or_mels, (torch.Tensor, np.ndarray)) and np.ndim(audio_or_mels) == 3:
        mels = torch.as_tensor(audio_or_mels, dtype=torch.float32)
        for i in range(0, len(mels), batch_size):
            yield mels[i:i + batch_size]
        return
    clips = list(audio_or_mels)
    for i in range(0, len(clips), batch_size):
        yield _batch(model, clips[i:i + batch_size])


@torch.no_grad()
def embed_clips(model: DigitClassifier, audio_or_mels, batch_size: int = 64) -> np.ndarray:
    """Classifier embeddings ``[N, embed_dim]`` (float64) of clips (list of ``[T]``), audio or mels."""
    model.eval()
    feats = [model.embed(m) for m in _as_mels(model, audio_or_mels, batch_size)]
    return torch.cat(feats).double().numpy() if feats else np.zeros((0, model.config["embed_dim"]))


@torch.no_grad()
def classify(model: DigitClassifier, audio_or_mels, batch_size: int = 64) -> np.ndarray:
    """Predicted labels ``[N]`` for clips (list of ``[T]``, centred in 1 s), audio ``[B, T]`` or mels."""
    model.eval()
    preds = [model(m).argmax(dim=-1) for m in _as_mels(model, audio_or_mels, batch_size)]
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)


def accuracy(model: DigitClassifier, audio_or_mels, labels: Sequence[int]) -> float:
    """Share of clips classified as ``labels``."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise AudiodiffError("accuracy of an empty set; pass at least one clip")
    return float(np.mean(classify(model, audio_or_mels) == labels))


def train_classifier(files: Sequence[str | os.PathLike], epochs: int = 10, seed: int = 0, batch_size: int = 32,
                     lr: float = 2e-3, max_gain_db: float = 12.0, valid: Sequence[str | os.PathLike] = (),
                     log: Callable[[str], None] | None = None, **model_args) -> DigitClassifier:
    """Train a ``DigitClassifier`` (``model_args``) on labelled ``files`` with AdamW and a cosine learning rate.

    Augmentation: a random placement of each clip in its 1 s window (time shift) and a random gain of
    ``-max_gain_db..0`` dB. Deterministic under ``seed`` on a given machine (initialisation, order, augmentation
    and dropout draw from it; the global RNG state is restored afterwards). ``valid`` files, if any, are scored
    after each epoch through ``log``. Returns the model in eval mode.
    """
    files = list(files)
    if not files:
        raise AudiodiffError("no training files for the digit classifier; check --data")
    labels = torch.tensor([label_from_name(f) for f in files])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(**model_args)
        if int(labels.max()) >= model.config["num_classes"]:
            raise AudiodiffError(f"label {int(labels.max())} needs num_classes > {int(labels.max())}; "
                                 f"pass num_classes={int(labels.max()) + 1}")
        rate = model.frontend.config.sample_rate
        clips = load_clips(files, rate)
        valid_clips = load_clips(valid, rate) if valid else []
        valid_labels = [label_from_name(f) for f in valid]
        gen = torch.Generator().manual_seed(seed)
        steps_per_epoch = -(-len(files) // batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch),
                                                    pct_start=0.15)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(files), generator=gen)
            total = 0.0
            for i in range(0, len(files), batch_size):
                idx = order[i:i + batch_size]
                mels = _batch(model, [clips[j] for j in idx], gen, max_gain_db)
                loss = nn.functional.cross_entropy(model(mels), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            if log is not None:
                msg = f"epoch {epoch + 1}/{epochs}: train loss {total / len(files):.4f}"
                if valid_clips:
                    msg += f", held-out accuracy {accuracy(model, valid_clips, valid_labels):.4f}"
                log(msg)
    return model.eval()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to ``a [N, D]`` and ``b [M, D]`` (Heusel et al., 2017, Eq. 6).

    ``Tr((S_a S_b)^(1/2))`` is computed as ``Tr((A S_b A)^(1/2))`` with ``A = S_a^(1/2)``: the two have the same
    eigenvalues, and the second is symmetric positive semi-definite, so ``eigh`` applies and round-off cannot
    produce the complex parts that ``scipy.linalg.sqrtm`` of the non-symmetric product does. Float64; tiny
    negative eigenvalues and a tiny negative total are clamped to 0. Few samples bias the distance upwards
    (Chong & Forsyth, 2020): compare distances only at equal set sizes.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise AudiodiffError(f"frechet_distance takes [N, D] and [M, D] features, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise AudiodiffError(f"frechet_distance needs at least 2 rows per set for a covariance, got {len(a)} "
                             f"and {len(b)}; score more clips")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # S_a^(1/2)
    middle = root_a @ s_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    dist = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * trace_root
    return float(max(dist, 0.0))
