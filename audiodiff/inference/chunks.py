"""Chunked synthesis of long mels: the chunk plan, the cross-fade windows and the overlap-add of the results.

A mel of ``F`` frames is cut into chunks of one length ``chunk_frames`` overlapping by at least
``overlap_frames``; the last one ends at ``F`` (so it may overlap more than one neighbour) and none is ever padded,
so any group of chunks stacks into one batch. Each chunk's waveform is weighted by linear ramps at its interior
edges and added into the output, which is then divided by the summed weights. All functions here are pure but
``overlap_add``, which adds into the ``out`` it is given.
"""

from __future__ import annotations

import torch

Chunk = tuple[int, int]  # frame range [start, end)


def plan(frames: int, chunk_frames: int, overlap_frames: int) -> list[Chunk]:
    """Frame ranges of equal length ``chunk_frames`` overlapping by at least ``overlap_frames``, the last ending at
    ``frames``; one range ``(0, frames)`` when the mel fits one chunk."""
    if frames <= chunk_frames:
        return [(0, frames)]
    stride = chunk_frames - overlap_frames
    starts = list(range(0, frames - chunk_frames, stride)) + [frames - chunk_frames]
    return [(s, s + chunk_frames) for s in starts]


def groups(batch: int, n_chunks: int, max_batch: int) -> list[list[tuple[int, int]]]:
    """``(row, chunk index)`` jobs of a ``[batch, n_mels, F]`` mel, chunk by chunk, in groups of ``max_batch``."""
    jobs = [(b, i) for i in range(n_chunks) for b in range(batch)]
    return [jobs[j:j + max_batch] for j in range(0, len(jobs), max_batch)]


def fade(n: int, device) -> torch.Tensor:
    """``[n]`` rising linear ramp, complementary with ``1 - fade``."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


def window(i: int, n: int, length: int, ramp: int, device) -> torch.Tensor:
    """Cross-fade weight ``[length]`` of chunk ``i`` of ``n``: linear ramps of ``ramp`` samples at interior edges."""
    w = torch.ones(length, device=device)
    if ramp and i > 0:
        w[:ramp] = fade(ramp, device)
    if ramp and i + 1 < n:
        w[-ramp:] = torch.minimum(w[-ramp:], 1 - fade(ramp, device))
    return w


def overlap_add(out: torch.Tensor, row: int, i: int, wave: torch.Tensor, chunks: list[Chunk], hop: int,
                ramp: int) -> None:
    """Add chunk ``i``'s waveform ``wave [chunk samples]``, weighted by its window, into ``out[row]``."""
    a, e = chunks[i]
    out[row, a * hop: e * hop] += wave * window(i, len(chunks), (e - a) * hop, ramp, wave.device)


def weight_sum(chunks: list[Chunk], hop: int, ramp: int, device) -> torch.Tensor:
    """``[F * hop]``: the summed windows of every chunk, by which the overlap-added output is divided."""
    weight = torch.zeros(chunks[-1][1] * hop, device=device)
    for i, (a, e) in enumerate(chunks):
        weight[a * hop: e * hop] += window(i, len(chunks), (e - a) * hop, ramp, device)
    return weight


def length_groups(plans: list[list[Chunk]], max_batch: int) -> list[list[tuple[int, int]]]:
    """``(row, chunk index)`` jobs of mels with chunk plans ``plans`` (one per row; lengths may differ), in groups
    of at most ``max_batch`` whose chunks have one length, so that each group stacks into one batch without
    padding. Within a length the order is chunk by chunk, then row: for rows of one length, ``groups``'s order."""
    jobs = sorted(((b, i) for b, plan in enumerate(plans) for i in range(len(plan))),
                  key=lambda j: (plans[j[0]][j[1]][1] - plans[j[0]][j[1]][0], j[1], j[0]))
    out: list[list[tuple[int, int]]] = []
    size = None
    for b, i in jobs:
        e, a = plans[b][i][1], plans[b][i][0]
        if e - a != size or len(out[-1]) == max_batch:
            out.append([])
            size = e - a
        out[-1].append((b, i))
    return out
