"""The mel front ends of other TTS stacks, as ``MelConfig`` values (``audio/mel.py`` turns each into a preset).

Each preset follows that project's own definition, read from the source file named in its entry; the test
``tests/test_presets.py`` checks each against a float64 numpy/librosa computation written from that definition.
What each front end does, in the terms of ``MelConfig``:

- ``espnet``: ESPnet2's TTS front end ``LogMelFbank`` (``espnet2/tts/feats_extract/log_mel_fbank.py``, with
  ``espnet2/layers/stft.py`` and ``espnet2/layers/log_mel.py``) at the values of its LJSpeech recipes: a centred
  STFT with reflect padding, amplitude ``sqrt(max(re^2 + im^2, 1e-10))``, librosa's Slaney filterbank over
  80-7600 Hz, ``log10(max(mel, 1e-10))``. ESPnet then normalises with global mean-variance statistics
  (``espnet2/layers/global_mvn.py``, from ``feats_stats.npz``): :func:`espnet_stats` reads that file into the
  ``mean`` and ``std`` fields.
- ``coqui``: Coqui TTS's ``AudioProcessor.melspectrogram`` (``TTS/utils/audio/processor.py``, ``numpy_transforms.py``)
  at the defaults of ``BaseAudioConfig`` (``TTS/config/shared_configs.py``): librosa's centred STFT with reflect
  padding, magnitude, Slaney filterbank over 0 Hz-sr/2, ``20 log10(max(mel, 1e-8)) - ref_level_db (20)``, then
  ``normalize``: ``(S - min_level_db) / -min_level_db`` mapped to [-4, 4] (``symmetric_norm``, ``max_norm`` 4) and
  clipped. Coqui models whose config sets ``mel_fmax: 8000`` need ``--set fmax=8000``.
- ``nemo``: NeMo's ``FilterbankFeatures`` (``nemo/collections/asr/parts/preprocessing/features.py``) at the values
  of its TTS configs (FastPitch, ``examples/tts/conf/fastpitch_align_v1.05.yaml``: 22.05 kHz, n_fft 1024, hop 256,
  80 bands over 0-8000 Hz, no pre-emphasis, dither or normalisation, ``mag_power`` 1, ``log_zero_guard_type: add``
  with 1e-5): a symmetric Hann window (``periodic=False``), a centred STFT with constant (zero) padding (current
  NeMo; versions before 1.20 padded by reflection: ``--set pad_mode=reflect``), ``ln(mel + 1e-5)``.
- ``bigvgan-22k`` and ``bigvgan-24k``: BigVGAN's ``meldataset.mel_spectrogram`` (NVIDIA/BigVGAN ``meldataset.py``),
  HiFi-GAN's front end, at the values of ``bigvgan_22khz_80band`` (22.05 kHz, 80 bands to 8 kHz; also
  ``bigvgan_v2_22khz_80band_fmax8k_256x``; the v2 model without ``fmax8k`` needs ``--set fmax=null``) and of
  ``bigvgan_24khz_100band`` / ``bigvgan_v2_24khz_100band_256x`` (24 kHz, 100 bands to 12 kHz). BigVGAN trains on
  peak-normalised audio (``librosa.util.normalize(audio) * 0.95``): that is its data, not its mel.
- ``speechbrain``: SpeechBrain's ``mel_spectogram`` (``speechbrain/lobes/models/FastSpeech2.py``, torchaudio's
  ``Spectrogram`` + ``MelScale``: a centred STFT with reflect padding) at the values of its LJSpeech HiFi-GAN recipe
  (``recipes/LJSpeech/TTS/vocoder/hifigan/hparams/train.yaml``: power 1, Slaney norm and scale, 0-8000 Hz), with
  ``dynamic_range_compression``: ``ln(max(mel, 1e-5))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiodiff.errors import AudiodiffError


@dataclass(frozen=True)
class Preset:
    """A named front end: the ``MelConfig`` fields that differ from the defaults, and the file they follow."""

    values: dict
    source: str  # "owner/repo path": the definition this preset follows
    summary: str  # one line for listings


_CENTRED = dict(center=True, mag_eps=0.0)  # torch.stft / librosa.stft with center=True on |X|

INTEROP: dict[str, Preset] = {
    "espnet": Preset(
        dict(_CENTRED, fmin=80.0, fmax=7600.0, mag_eps=1e-10, mag_guard="clamp", log="log10", log_floor=1e-10),
        "espnet/espnet espnet2/tts/feats_extract/log_mel_fbank.py",
        "ESPnet2 TTS (LogMelFbank): log10, 80-7600 Hz, optional global mean-variance statistics"),
    "coqui": Preset(
        dict(_CENTRED, fmax=None, log="db", log_floor=1e-8, db_ref=20.0, db_min=-100.0, db_norm="symmetric",
             max_norm=4.0, clip_norm=True),
        "coqui-ai/TTS TTS/utils/audio/processor.py",
        "Coqui TTS (AudioProcessor): dB - ref_level_db, normalised to [-4, 4]"),
    "nemo": Preset(
        dict(_CENTRED, window_periodic=False, pad_mode="constant", log_guard="add", log_floor=1e-5),
        "NVIDIA/NeMo nemo/collections/asr/parts/preprocessing/features.py",
        "NeMo TTS (FilterbankFeatures): symmetric window, zero padding, ln(mel + 1e-5)"),
    "bigvgan-22k": Preset(
        dict(),
        "NVIDIA/BigVGAN meldataset.py",
        "BigVGAN bigvgan_22khz_80band: HiFi-GAN's mel, 22.05 kHz, 80 bands to 8 kHz"),
    "bigvgan-24k": Preset(
        dict(sample_rate=24000, n_mels=100, fmax=12000.0),
        "NVIDIA/BigVGAN meldataset.py",
        "BigVGAN bigvgan_24khz_100band: HiFi-GAN's mel, 24 kHz, 100 bands to 12 kHz"),
    "speechbrain": Preset(
        dict(_CENTRED),
        "speechbrain/speechbrain speechbrain/lobes/models/FastSpeech2.py",
        "SpeechBrain (mel_spectogram): centred STFT, ln(max(mel, 1e-5))"),
}


def espnet_stats(path: str | Path, eps: float = 1e-20) -> dict[str, tuple[float, ...]]:
    """``{"mean": ..., "std": ...}`` from an ESPnet ``feats_stats.npz`` (``count``, ``sum``, ``sum_square``), as
    ESPnet's ``GlobalMVN`` computes them (``std = sqrt(max(var, eps))``); pass them to ``mel_config("espnet", ...)``
    or ``audiodiff mel --preset espnet --stats feats_stats.npz``."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            count, total, square = float(f["count"]), f["sum"].astype(np.float64), f["sum_square"].astype(np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise AudiodiffError(f"{path}: not an ESPnet feats_stats.npz with count, sum and sum_square ({err}); give "
                             f"the file from ESPnet's collect_stats stage (exp/*_stats*/train/feats_stats.npz)") \
            from None
    mean = total / count
    std = np.sqrt(np.maximum(square / count - mean**2, eps))
    return {"mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std)}
