"""Dataset preparation behind ``audiodiff data ...``: tools that make a training set on disk, used once before
training and by nothing in training or inference. ``music``: synthetic music rendered from the music21 corpus
(``audiodiff data render-music``, for recipes/music*.yaml)."""
