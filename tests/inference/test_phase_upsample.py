"""The phase form of nearest-2× upsample + 3×3 conv equals the direct form."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.models.layers import _phase_upsample_conv


@settings(max_examples=20, deadline=None)
@given(cin=st.integers(1, 12), cout=st.integers(1, 12), h=st.integers(1, 9), w=st.integers(1, 9),
       batch=st.integers(1, 2), channels_last=st.booleans(), bias=st.booleans(), seed=st.integers(0, 999))
def test_phase_form_matches_interpolate_then_conv(cin, cout, h, w, batch, channels_last, bias, seed):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    x = torch.randn(batch, cin, h, w)
    if channels_last:
        x, conv = x.contiguous(memory_format=torch.channels_last), conv.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        got = _phase_upsample_conv(x, conv)
        again = _phase_upsample_conv(x, conv)  # served from the kernel cache
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(got, again)


def test_cache_follows_weight_changes_and_gradients_flow():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 5, 6)
    with torch.no_grad():
        _phase_upsample_conv(x, conv)
        conv.weight.mul_(2.0)
        expected = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        assert torch.allclose(_phase_upsample_conv(x, conv), expected, atol=1e-5)
    x.requires_grad_(True)
    _phase_upsample_conv(x, conv).sum().backward()
    assert conv.weight.grad is not None and x.grad is not None and x.grad.abs().sum() > 0
