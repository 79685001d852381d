"""The CPU fast path (``inference/cpu_layers.py``): the time-tiled residual layers compute the eager network's
output, with tiles that do not divide the length, and ``Vocoder`` uses them on the CPU unless ``kernel=False``."""

from __future__ import annotations

import pytest
import torch

from audiodiff.inference.cpu_layers import TiledDiffWave, fits

from conftest import rel_l2, tiny_net, tiny_vocoder


@pytest.mark.numerics
@pytest.mark.parametrize("tile", [100, 1000, 8192])
def test_tiled_layers_give_the_eager_network_output(tile):
    net = tiny_net(layers=4, channels=8).eval()  # dilations 1, 2, 4, 8: taps reach across tile edges
    x = torch.randn(2, 1, 12 * 256, generator=torch.Generator().manual_seed(0))
    mel = torch.randn(2, 80, 12, generator=torch.Generator().manual_seed(1)) - 5
    t = torch.tensor([3.0, 17.5])
    with torch.no_grad():
        want = net(x, t, mel=mel)
        got = TiledDiffWave(net, tile)(x, t, cond=net.upsample(mel))
    # The same dot products in GEMMs of other row counts: float32 rounding at most (~1e-7 relative); a tap read
    # from the wrong tile or a missing padding changes the output by far more than 1e-3.
    assert rel_l2(got, want) < 1e-5
    assert want.abs().max() > 0.01


def test_the_vocoder_takes_the_tiled_path_on_the_cpu_unless_kernel_is_off(demo_mel):
    voc = tiny_vocoder(refine=0)
    runner, graphs = voc.runtime.runner(voc.options)
    assert graphs is None and isinstance(runner.net, TiledDiffWave) and fits(voc.net)
    voc.kernel = False
    runner, _ = voc.runtime.runner(voc.options)
    assert runner is voc.denoiser  # the eager reference
