"""The mel-spectrogram front end: one ``nn.Module`` with named presets.

Presets
- ``hifigan`` (default): the mel of HiFi-GAN (Kong et al., 2020, ``meldataset.mel_spectrogram``) and of the TTS
  models that feed it (Tacotron 2, Glow-TTS, Grad-TTS, FastSpeech 2): 22.05 kHz, n_fft 1024, hop 256, win 1024,
  80 Slaney mel bands over 0-8 kHz, reflect padding of (n_fft - hop) / 2 on both sides and no centring,
  magnitude ``sqrt(re^2 + im^2 + 1e-9)`` (HiFi-GAN's epsilon), natural log with a 1e-5 floor.
- ``diffwave``: the reference DiffWave (Kong et al., 2021) ``preprocess.py``: torchaudio's defaults (HTK mel scale,
  no filter normalisation, centred STFT), fmin 20, fmax sr/2, win 4 * hop, normalised STFT magnitude,
  ``20 * log10(max(x, 1e-5)) - 20`` then ``(x + 100) / 100`` clamped to [0, 1].

The front ends of other TTS stacks (ESPnet, Coqui TTS, NeMo, BigVGAN, SpeechBrain) are presets too, each checked
against that project's definition: ``audio/presets.py`` lists them with the source file each follows. The fields that
they need (window symmetry, padding mode, magnitude power, log base and floor, Coqui's dB scaling and range
normalisation, ESPnet's global mean-variance statistics) default to values that leave ``hifigan`` and ``diffwave``
as they were. ``audio/convert.py`` converts mels between conventions.

Frame count: with ``P = pad_left + pad_right`` the module returns ``floor((T + P - n_fft) / hop) + 1`` frames for
``T`` samples, i.e. ``floor(T / hop)`` for ``hifigan`` and ``floor(T / hop) + 1`` for ``diffwave``. Frame ``i``
covers padded samples ``[i * hop, i * hop + n_fft)``, which is what lets training crop audio and mel in step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torchaudio
from torch import nn

from audiodiff.audio.presets import INTEROP
from audiodiff.errors import AudiodiffError
from audiodiff.ranges import OneOf, Range

# "ln", "log10": log(guard(x)); "db": 20 log10(guard(x)) - db_ref (Coqui TTS); "diffwave": see MelConfig.log
LOGS = ("ln", "log10", "db", "diffwave")
MEL_SCALES = ("slaney", "htk")
DB_NORMS = ("symmetric", "positive")  # Coqui TTS: [-max_norm, max_norm] or [0, max_norm]


def _fmax_rule(c: "MelConfig") -> str | None:
    if c.fmax is not None and c.fmax > c.sample_rate / 2:
        return (f"recipe key mel.fmax: {c.fmax:g} is above half of mel.sample_rate {c.sample_rate}; expected at most "
                f"{c.sample_rate / 2:g} Hz, or null for sample_rate / 2")
    return None


def _fmin_rule(c: "MelConfig") -> str | None:
    top = c.fmax if c.fmax is not None else c.sample_rate / 2
    if c.fmin >= top:
        return f"recipe key mel.fmin: {c.fmin:g} is not below mel.fmax ({top:g} Hz); expected fmin < fmax"
    return None


def _hop_rule(c: "MelConfig") -> str | None:
    if c.hop_length > c.win_length:
        return (f"recipe key mel.hop_length: {c.hop_length} exceeds mel.win_length {c.win_length}, so frames would "
                f"skip audio between windows; expected hop_length <= win_length")
    return None


def _db_rule(c: "MelConfig") -> str | None:
    if c.db_norm is not None and c.log != "db":
        return (f"recipe key mel.db_norm: {c.db_norm!r} normalises a dB mel, but mel.log is {c.log!r}; set "
                f"mel.log: db or mel.db_norm: null")
    return None


def _stats_rule(c: "MelConfig") -> str | None:
    if (c.mean is None) != (c.std is None):
        return "recipe keys mel.mean and mel.std: give both (global mean-variance statistics) or neither"
    for key, stats in (("mean", c.mean), ("std", c.std)):
        if stats is not None and len(stats) != c.n_mels:
            return (f"recipe key mel.{key}: {len(stats)} values for mel.n_mels {c.n_mels} bands; expected one per "
                    f"band (ESPnet's feats_stats.npz: sum / count, sqrt(sum_square / count - mean^2))")
    return None


@dataclass(frozen=True)
class MelConfig:
    """Every parameter of the mel front end; presets are named instances of it."""

    sample_rate: Annotated[int, Range(1)] = 22050
    n_fft: Annotated[int, Range(1, 2**16)] = 1024
    hop_length: Annotated[int, Range(1)] = 256
    win_length: Annotated[int, Range(1)] = 1024  # at most n_fft (checked by mel_config)
    n_mels: Annotated[int, Range(1)] = 80
    fmin: Annotated[float, Range(0)] = 0.0
    fmax: Annotated[float | None, Range(0, lo_open=True)] = 8000.0  # None: sample_rate / 2
    mel_scale: Annotated[str, OneOf(*MEL_SCALES)] = "slaney"
    mel_norm: Annotated[str | None, OneOf("slaney", None)] = "slaney"  # "slaney" (area-normalised filters) or None
    center: bool = False  # True: pad n_fft // 2 each side; False: pad (n_fft - hop) / 2 each side
    normalized: bool = False  # divide the STFT by sqrt(sum(window^2))
    # log: "ln": log(max(x, 1e-5)); "diffwave": (20 log10(max(x, 1e-5)) - 20 + 100) / 100 in [0, 1]; "log10" and
    # "db" (20 log10(x) - db_ref, Coqui) take the floor and guard of log_floor and log_guard below
    log: Annotated[str, OneOf(*LOGS)] = "ln"
    mag_eps: Annotated[float, Range(0)] = 1e-9  # magnitude sqrt(re^2 + im^2 + mag_eps): HiFi-GAN 1e-9, DiffWave 0
    # Fields other TTS stacks need (audio/presets.py); the defaults are the hifigan and diffwave behaviour.
    window_periodic: bool = True  # False: the symmetric Hann window (NeMo's periodic=False)
    pad_mode: Annotated[str, OneOf("reflect", "constant")] = "reflect"  # how the pad samples are filled
    mag_guard: Annotated[str, OneOf("add", "clamp")] = "add"  # sqrt(p + mag_eps), or sqrt(max(p, mag_eps)) (ESPnet)
    mag_power: Annotated[float, Range(0, lo_open=True)] = 1.0  # the filterbank weighs |X|^mag_power (2: power)
    log_floor: Annotated[float, Range(0, lo_open=True)] = 1e-5  # the guard g of "ln", "log10" and "db"
    log_guard: Annotated[str, OneOf("clamp", "add")] = "clamp"  # log(max(x, g)), or log(x + g) (NeMo)
    db_ref: Annotated[float, Range(-200, 200)] = 20.0  # log "db": Coqui's ref_level_db, subtracted from 20 log10(x)
    db_min: Annotated[float, Range(hi=0, hi_open=True)] = -100.0  # Coqui's min_level_db: the bottom of db_norm's range
    db_norm: Annotated[str | None, OneOf(*DB_NORMS, None)] = None  # Coqui's signal_norm (+ symmetric_norm)
    max_norm: Annotated[float, Range(0, lo_open=True)] = 4.0  # Coqui's max_norm
    clip_norm: bool = True  # Coqui's clip_norm: clip the normalised values to their range
    # Global mean-variance statistics per band (ESPnet's global_mvn): (log-mel - mean) / std, after the log.
    mean: Annotated[tuple[float, ...] | None, Range(-1e4, 1e4)] = None
    std: Annotated[tuple[float, ...] | None, Range(0, lo_open=True)] = None
    # relations between fields, checked by config._build
    RULES: ClassVar = (_fmax_rule, _fmin_rule, _hop_rule, _db_rule, _stats_rule)

    @property
    def pad(self) -> tuple[int, int]:
        """Padding (left, right) in samples applied before framing (filled as ``pad_mode`` says)."""
        if self.center:
            return self.n_fft // 2, self.n_fft // 2
        total = self.n_fft - self.hop_length
        return total // 2, total - total // 2

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` of audio (see the module docstring)."""
        left, right = self.pad
        return max(0, (num_samples + left + right - self.n_fft) // self.hop_length + 1)

    def segment_length(self, frames: int) -> int:
        """Padded samples needed to compute exactly ``frames`` frames without further padding."""
        return (frames - 1) * self.hop_length + self.n_fft


PRESETS: dict[str, MelConfig] = {
    "hifigan": MelConfig(),
    "diffwave": MelConfig(
        n_fft=1024, hop_length=256, win_length=1024, fmin=20.0, fmax=None, mel_scale="htk", mel_norm=None,
        center=True, normalized=True, log="diffwave", mag_eps=0.0,
    ),
    **{name: MelConfig(**preset.values) for name, preset in INTEROP.items()},
}


def mel_config(preset: str = "hifigan", **overrides) -> MelConfig:
    """The named preset with ``overrides`` applied (``diffwave`` keeps win = 4 * hop unless told otherwise)."""
    if preset not in PRESETS:
        raise AudiodiffError(f"unknown mel preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    base = PRESETS[preset]
    if preset == "diffwave" and "hop_length" in overrides and "win_length" not in overrides:
        overrides["win_length"] = 4 * overrides["hop_length"]
    fields = {f.name for f in dataclasses.fields(MelConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise AudiodiffError(f"unknown mel parameter(s) {sorted(unknown)}; valid: {sorted(fields)}")
    cfg = dataclasses.replace(base, **overrides)
    if cfg.win_length > cfg.n_fft:
        raise AudiodiffError(f"mel: win_length {cfg.win_length} exceeds n_fft {cfg.n_fft}; set mel.n_fft to at "
                             f"least {cfg.win_length} (the diffwave preset uses win = 4 * hop)")
    return cfg


class MelSpectrogram(nn.Module):
    """Waveform ``[..., T]`` -> log-mel ``[..., n_mels, frames]``; window and filterbank are buffers."""

    def __init__(self, config: MelConfig | None = None, **kwargs):
        super().__init__()
        self.config = config if config is not None else MelConfig(**kwargs)
        c = self.config
        if c.win_length > c.n_fft or c.hop_length <= 0:
            raise AudiodiffError(f"mel: need 0 < hop_length and win_length <= n_fft, got {c}")
        fmax = c.fmax if c.fmax is not None else c.sample_rate / 2
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=c.n_fft // 2 + 1, f_min=c.fmin, f_max=fmax, n_mels=c.n_mels,
            sample_rate=c.sample_rate, norm=c.mel_norm, mel_scale=c.mel_scale,
        )  # [F, n_mels]
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)  # [n_mels, F]
        window = torch.hann_window(c.win_length, periodic=c.window_periodic)
        self.register_buffer("window", window, persistent=False)
        # noise_band_mean in float32 beside the filterbank, for frame_rms and the priors in the training step
        # (computing it there would copy the filterbank to the host every step)
        self.register_buffer("band_gain", self.noise_band_mean().float(), persistent=False)

    @classmethod
    def from_preset(cls, preset: str = "hifigan", **overrides) -> "MelSpectrogram":
        return cls(mel_config(preset, **overrides))

    def stft(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """``x [N, T]`` -> complex ``[N, bins, frames]`` in this front end's framing (reflect padding unless
        ``pad=False``): the frames of ``forward``, also used by ``refine.py`` to edit a waveform's mel."""
        c = self.config
        x = x.float()
        if pad:
            left, right = c.pad
            if c.pad_mode == "reflect" and x.shape[-1] <= max(left, right):
                raise AudiodiffError(
                    f"audio of {x.shape[-1]} samples is too short for the mel front end; "
                    f"need more than {max(left, right)} samples"
                )
            x = torch.nn.functional.pad(x.unsqueeze(1), (left, right), mode=c.pad_mode).squeeze(1)
        with torch.autocast(x.device.type, enabled=False):
            return torch.stft(
                x, c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=self.window,
                center=False, normalized=False, onesided=True, return_complex=True,
            )

    def magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """``|spec|`` as the mel uses it (with ``mag_eps``, and normalised for the diffwave preset), raised to
        ``mag_power``."""
        c = self.config
        power = spec.real.square() + spec.imag.square()
        mag = torch.sqrt(power + c.mag_eps if c.mag_guard == "add" else power.clamp(min=c.mag_eps))
        mag = mag / self.window.square().sum().sqrt() if c.normalized else mag
        return mag if c.mag_power == 1.0 else mag.pow(c.mag_power)

    def forward(self, audio: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """``audio [..., T]`` -> ``[..., n_mels, frames]``; ``pad=False`` frames an already padded segment."""
        c = self.config
        lead = audio.shape[:-1]
        spec = self.stft(audio.reshape(-1, audio.shape[-1]), pad)  # [N, F, frames]
        with torch.autocast(spec.device.type, enabled=False):
            mel = compress(torch.matmul(self.fbank, self.magnitude(spec)), c)  # [N, n_mels, frames]
        return mel.reshape(*lead, c.n_mels, mel.shape[-1])

    def noise_band_mean(self) -> torch.Tensor:
        """``[n_mels]`` (float64): the mean value of each band of the (linear) mel for white Gaussian noise of unit
        variance. Its STFT magnitude is Rayleigh with mean ``sqrt(pi) / 2 * ||window||`` (divided by ``||window||``
        when ``normalized``) in every bin, so band ``m`` averages that times the sum of its filter."""
        energy = float(self.window.detach().double().square().sum())
        rayleigh = (torch.pi ** 0.5) / 2 * (1.0 if self.config.normalized else energy ** 0.5)
        return rayleigh * self.fbank.detach().double().cpu().sum(1)

    def frame_rms(self, mel: torch.Tensor) -> torch.Tensor:
        """An estimate of each frame's RMS amplitude from its log-mel ``[..., n_mels, frames]`` -> ``[..., frames]``.

        Band ``m`` of Gaussian noise of variance ``s^2`` has mean ``s g_m`` (``g_m``: :meth:`noise_band_mean`), so
        each band gives ``(mel_m / g_m)^2`` as an estimate of the power density it covers; their mean weighted by the
        filters' widths in bins, times the share of the spectrum that the filterbank spans, estimates the frame's
        variance. Exact for white noise; for other signals a scale that follows the energy, which is what a prior
        needs (PriorGrad's, Lee et al. 2022, section 3.2)."""
        c = self.config
        fb = self.fbank  # [n_mels, F]
        gain = self.band_gain  # [n_mels]
        width = fb.sum(1) / fb.amax(1).clamp(min=1e-12)  # [n_mels]: the filters' equivalent widths in bins
        fmax = c.fmax if c.fmax is not None else c.sample_rate / 2
        share = (fmax - c.fmin) / (c.sample_rate / 2)
        with torch.autocast(mel.device.type, enabled=False):
            power = (decompress(mel.float(), c) / gain[:, None]).square()  # [..., n_mels, frames]
            density = (power * width[:, None]).sum(-2) / width.sum()
            return (density * share).sqrt()


def decompress(mel: torch.Tensor, config: "MelConfig | str") -> torch.Tensor:
    """The inverse of :func:`compress` (above its floor and inside its clipping): log-mel -> the linear mel, i.e.
    the filterbank applied to ``|X|^mag_power``. ``config``: the mel's ``MelConfig``, or (for the ``ln`` and
    ``diffwave`` conventions, which need nothing else) just its ``log``."""
    c = config if isinstance(config, MelConfig) else _log_only(config)
    if c.mean is not None:
        mel = mel * _band(c.std, mel) + _band(c.mean, mel)
    if c.log == "diffwave":
        return 10 ** (((mel * 100 - 100) + 20) / 20)  # ((20 log10(x) - 20) + 100) / 100 solved for x
    if c.log == "db":
        if c.db_norm is not None:  # undo Coqui's normalize(): back to dB relative to db_ref
            unit = (mel + c.max_norm) / (2 * c.max_norm) if c.db_norm == "symmetric" else mel / c.max_norm
            mel = unit * -c.db_min + c.db_min
        x = 10 ** ((mel + c.db_ref) / 20)
    else:
        x = mel.exp() if c.log == "ln" else 10 ** mel
    return x - c.log_floor if c.log_guard == "add" else x


def compress(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """The linear mel (filterbank applied to ``|X|^mag_power``) -> the log-mel of the convention ``config``."""
    c = config
    if c.log == "diffwave":
        db = 20 * torch.log10(mel.clamp(min=1e-5)) - 20
        return ((db + 100) / 100).clamp(0.0, 1.0)
    guarded = mel + c.log_floor if c.log_guard == "add" else mel.clamp(min=c.log_floor)
    if c.log == "ln":
        out = torch.log(guarded)
    elif c.log == "log10":
        out = torch.log10(guarded)
    else:  # "db", Coqui's amp_to_db(x) - ref_level_db, then normalize()
        out = 20 * torch.log10(guarded) - c.db_ref
        if c.db_norm is not None:
            unit = (out - c.db_min) / -c.db_min
            lo = -c.max_norm if c.db_norm == "symmetric" else 0.0
            out = unit * (c.max_norm - lo) + lo
            out = out.clamp(lo, c.max_norm) if c.clip_norm else out
    if c.mean is not None:
        out = (out - _band(c.mean, out)) / _band(c.std, out)
    return out


def _band(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None]  # [n_mels, 1]


def _log_only(log: str) -> MelConfig:
    if log not in ("ln", "diffwave"):
        raise AudiodiffError(f"mel: decompress needs the MelConfig of a {log!r} mel (its floor, reference and "
                             f"statistics), not just its log; pass the config")
    return PRESETS["diffwave" if log == "diffwave" else "hifigan"]
