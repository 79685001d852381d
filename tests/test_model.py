"""The DiffWave backbone: shapes for any hop size, unconditional and class-conditional modes, reusable
conditioning, and the zero-initialised output projection."""

from __future__ import annotations

import pytest
import torch

from audiodiff.models.diffwave import MelUpsampler, split_hop

from conftest import tiny_net

FRAMES = 5


def _inputs(batch: int, hop: int, n_mels: int = 80, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, FRAMES * hop, generator=g)
    t = torch.tensor([3.0, 40.0, 0.5][:batch])
    mel = torch.randn(batch, n_mels, FRAMES, generator=g) if n_mels else None
    return x, t, mel


@pytest.mark.parametrize("hop", [256, 300, 200, 251, 160])
def test_output_shape_for_any_hop(hop):
    f1, f2 = split_hop(hop)
    assert f1 * f2 == hop and f1 <= f2
    net = tiny_net(hop_length=hop)
    x, t, mel = _inputs(2, hop)
    cond = net.upsample(mel)
    assert cond.shape == (2, 80, FRAMES * hop)
    out = net(x, t, mel)
    assert out.shape == (2, 1, FRAMES * hop) and torch.isfinite(out).all()
    # The upsampled mel follows its frame: changing only the last frame leaves the first frames' samples alone.
    mel2 = mel.clone()
    mel2[..., -1] += 1.0
    changed = (net.upsample(mel2) - cond).abs().amax(dim=(0, 1)) > 0  # [T]
    assert not changed[: (FRAMES - 2) * hop].any() and changed[(FRAMES - 1) * hop:].all()


def test_unconditional_model_needs_no_mel():
    net = tiny_net(n_mels=0)
    assert net.upsampler is None and all(layer.cond_proj is None for layer in net.layers)
    x, t, _ = _inputs(2, 256, n_mels=0)
    out = net(x, t)
    assert out.shape == x.shape and out.abs().sum() > 0


def test_conditional_model_without_mel_says_what_to_pass():
    net = tiny_net()
    x, t, _ = _inputs(1, 256)
    with pytest.raises(ValueError, match="mel= or cond="):
        net(x, t)


def test_mel_changes_the_output():
    net = tiny_net()
    x, t, mel = _inputs(2, 256)
    assert not torch.allclose(net(x, t, mel), net(x, t, mel + 1.0))


def test_class_conditional_labels_and_null_label():
    net = tiny_net(num_classes=3)
    x, t, mel = _inputs(2, 256)
    out = {c: net(x, t, mel, class_labels=torch.tensor([c, c])) for c in (-1, 0, 1, 3)}
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[-1])
    # Bitwise: the same embedding row, and batches of one shape run the same kernels, whose arithmetic for one
    # example does not depend on the other example's values.
    assert torch.equal(out[-1], out[3])  # -1 is the null token, index num_classes
    assert torch.equal(net(x, t, mel), out[-1])  # no labels: the null token
    mixed = net(x, t, mel, class_labels=torch.tensor([0, 1]))
    assert torch.equal(mixed[0], out[0][0]) and torch.equal(mixed[1], out[1][1])


def test_cond_from_upsample_equals_passing_mel():
    net = tiny_net(hop_length=300)
    x, t, mel = _inputs(3, 300)
    assert torch.equal(net(x, t, cond=net.upsample(mel)), net(x, t, mel))  # the same operations: bitwise


@pytest.mark.numerics
def test_batch_items_are_independent():
    net = tiny_net()
    x, t, mel = _inputs(2, 256)
    both = net(x, t, mel)
    # fp32: another batch shape may reassociate each layer's sums of K <= 92 products of O(1) activations,
    # ~sqrt(K) eps = 1e-6 of them, less in the 0.1-sized output; measured 1.5e-8 (one ulp) with 1 and 2 threads.
    # A leak between batch items moves the output by O(0.1).
    torch.testing.assert_close(net(x[1:], t[1:], mel[1:]), both[1:], rtol=1e-5, atol=1e-6)


def test_zero_initialised_output_projection_gives_zeros():
    net = tiny_net(randomize_output=False)  # the constructor's own output projection
    x, t, mel = _inputs(2, 256)
    out = net(x, t, mel)
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    # ...while the rest of the network is not degenerate: gradients reach the output projection.
    out.sum().backward()
    assert net.output_proj.weight.grad.abs().sum() > 0


@pytest.mark.numerics
def test_fractional_steps_interpolate_between_integer_steps():
    net = tiny_net()
    emb = net.step_embedding
    lo, hi, mid = emb(torch.tensor([4.0])), emb(torch.tensor([5.0])), emb(torch.tensor([4.0, 4.5, 5.0]))
    # fp32, batches of 1 and 3: the MLP's 128- and 16-term sums may be reassociated (~sqrt(128) eps = 1.3e-6 of
    # O(1) terms); measured 3e-8 on values ~0.2. A wrong interpolation weight moves them by ~1e-2.
    torch.testing.assert_close(mid[0], lo[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mid[2], hi[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mid[1], lo[0]) and not torch.allclose(mid[1], hi[0])


def _conv_reference(net, x, t, mel):
    """DiffWave's forward written with ``F.conv1d`` as in the paper's Fig. 2: the channels-last GEMM layers must
    compute the same function from the same parameters."""
    import math
    from torch.nn import functional as F
    cond = net.upsample(mel)
    h = F.relu(F.conv1d(x, net.input_proj.weight, net.input_proj.bias))
    emb = net.step_embedding(t)
    skip = 0
    for layer in net.layers:
        conv = layer.dilated_conv
        y = F.conv1d(h + layer.step_proj(emb)[..., None], conv.weight, conv.bias, padding=layer.dilation,
                     dilation=layer.dilation)
        y = y + F.conv1d(cond, layer.cond_proj.weight, layer.cond_proj.bias)
        gate, filt = y.chunk(2, dim=1)
        y = F.conv1d(torch.sigmoid(gate) * torch.tanh(filt), layer.out_proj.weight, layer.out_proj.bias)
        residual, s = y.chunk(2, dim=1)
        h, skip = (h + residual) / math.sqrt(2), skip + s
    h = F.relu(F.conv1d(skip / math.sqrt(len(net.layers)), net.skip_proj.weight, net.skip_proj.bias))
    return F.conv1d(h, net.output_proj.weight, net.output_proj.bias)


@pytest.mark.numerics
@pytest.mark.parametrize("hop", [256, 251])
def test_gemm_and_conv_forms_equal_the_paper_convolutions(hop):
    torch.manual_seed(0)
    net = tiny_net(hop_length=hop).double()
    for p in net.parameters():  # the output projection starts at zero: give every weight a value
        torch.nn.init.normal_(p, std=0.3)
    x, t, mel = _inputs(2, hop)
    x, mel = x.double(), mel.double()
    ref = _conv_reference(net, x, t, mel)
    with torch.no_grad():
        gemm = net(x, t, mel)  # inference (and compiled training): the channels-last GEMM form
    conv = net(x, t, mel)  # eager training (gradients on): the convolution form
    assert ref.abs().mean() > 1e-3 and conv.requires_grad and not gemm.requires_grad
    # float64: the forms sum the same <= 92 products per layer in other orders, ~sqrt(92) eps64 = 2e-15 relative
    # (measured 3e-16); 1e-10 keeps the comparison free of rounding while a wrong tap, dilation or slice is O(1).
    torch.testing.assert_close(gemm, ref.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(conv, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.numerics
@pytest.mark.parametrize("hop", [256, 300, 275, 16])
def test_upsampler_equals_transposed_convolutions(hop):
    # The upsampler computes its ConvTranspose2d stages as products and shifted sums; the modules themselves
    # must give the same result, for even and odd factors (275 = 11 x 25) and a single stage (16 = 1 x 16).
    torch.manual_seed(0)
    up = MelUpsampler(hop).double()
    for conv in up.stages:
        torch.nn.init.normal_(conv.weight)
        torch.nn.init.normal_(conv.bias)
    mel = torch.randn(2, 5, 7, dtype=torch.float64)
    x = mel.unsqueeze(1)
    for conv in up.stages:
        x = torch.nn.functional.leaky_relu(conv(x), 0.4)
    # float64, each output a sum of 6 products (2 kernel columns x 3 bands) per stage on values up to ~50: rounding
    # ~50 eps64 = 1e-14 (measured 7e-15); 1e-12 is 100x that, and a wrong column or shift is O(1).
    torch.testing.assert_close(up(mel), x.squeeze(1), rtol=1e-12, atol=1e-12)


def test_importing_the_model_does_not_import_the_compiler():
    # torch._dynamo costs 2 s to import and imports triton; the upsampler's exclusion from compiled graphs must not
    # pull it in for everyone who only runs the model.
    import subprocess
    import sys
    code = "import sys, audiodiff.models.diffwave as d; d.DiffWave(residual_layers=2, residual_channels=4); " \
           "print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_mel_shift_and_scale_are_the_affine_map_the_network_reads():
    """(mel + shift) * scale is what the upsampler sees: a model with the map equals one without it fed the mapped
    mel, and an exported model keeps the map."""
    from audiodiff.models.diffwave import DiffWave

    torch.manual_seed(0)
    plain = DiffWave(n_mels=80, hop_length=256, residual_layers=2, residual_channels=4, embed_dim=16)
    mapped = DiffWave(n_mels=80, hop_length=256, residual_layers=2, residual_channels=4, embed_dim=16,
                      mel_shift=9.21, mel_scale=0.087)
    mapped.load_state_dict(plain.state_dict())
    x, t, mel = _inputs(2, 256)
    torch.testing.assert_close(mapped.upsample(mel), plain.upsample((mel + 9.21) * 0.087))
    assert not torch.allclose(mapped.upsample(mel), plain.upsample(mel))


def test_kaiming_init_draws_he_normal_convolutions():
    from audiodiff.models.diffwave import DiffWave

    torch.manual_seed(0)
    net = DiffWave(n_mels=80, hop_length=256, residual_layers=4, residual_channels=64, embed_dim=16, init="kaiming")
    w = net.layers[0].dilated_conv.weight  # fan_in 64 * 3
    assert abs(float(w.std()) / (2 / 192) ** 0.5 - 1) < 0.05  # He-normal: std sqrt(2 / fan_in)
    torch.manual_seed(0)
    default = DiffWave(n_mels=80, hop_length=256, residual_layers=4, residual_channels=64, embed_dim=16)
    assert float(default.layers[0].dilated_conv.weight.std()) < 0.5 * float(w.std())
    assert float(net.output_proj.weight.abs().max()) == 0.0  # the output projection still starts at zero
    with pytest.raises(ValueError, match="kaiming"):
        DiffWave(n_mels=80, init="xavier")
