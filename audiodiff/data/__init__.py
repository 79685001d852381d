"""Data: audio file discovery and screening, train/valid splits, manifests, aligned audio/mel crops read from memory
or lazily from disk."""

from audiodiff.data.dataset import AudioCrops, StepBatchSampler
from audiodiff.data.files import class_labels, find_audio_files, split_files
from audiodiff.data.manifest import Manifest, is_manifest, read_manifest, scan, write_manifest

__all__ = ["AudioCrops", "Manifest", "StepBatchSampler", "class_labels", "find_audio_files", "is_manifest",
           "read_manifest", "scan", "split_files", "write_manifest"]
