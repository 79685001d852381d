"""Audio front end: file I/O and the mel-spectrogram module with named presets."""

from audiodiff.audio.io import load_audio, save_audio
from audiodiff.audio.mel import PRESETS, MelConfig, MelSpectrogram

__all__ = ["load_audio", "save_audio", "MelConfig", "MelSpectrogram", "PRESETS"]
