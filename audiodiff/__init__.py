"""audiodiff: diffusion models for audio (DiffWave vocoder, shared diffusion core, spectrogram U-Net)."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy, so `import audiodiff` stays cheap for the CLI
    if name == "Vocoder":
        from audiodiff.vocoder import Vocoder

        return Vocoder
    if name == "MelGenerator":
        from audiodiff.melgen import MelGenerator

        return MelGenerator
    if name == "MelSpectrogram":
        from audiodiff.audio.mel import MelSpectrogram

        return MelSpectrogram
    raise AttributeError(name)
