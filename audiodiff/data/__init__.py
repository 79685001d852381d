"""Data: audio file discovery and screening, train/valid splits, aligned audio/mel crops."""

from audiodiff.data.dataset import AudioCrops, StepBatchSampler
from audiodiff.data.files import class_labels, find_audio_files, split_files

__all__ = ["AudioCrops", "StepBatchSampler", "class_labels", "find_audio_files", "split_files"]
