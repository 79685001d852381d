"""What the inference objects (``Vocoder``, ``MelGenerator``, ``WaveGenerator``) share: one base for device and
persistence (``base.py``), the validated synthesis options whose value is the fast path's cache key
(``options.py``), and the chunk plan and cross-fades of long mels (``chunks.py``)."""
