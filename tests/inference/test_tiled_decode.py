"""Out-of-memory in the VAE decode: tiled retry with blended overlaps, then a
clear message."""
import pytest
import torch
import torch.nn.functional as F

from inference.tiled_decode import OutOfMemoryError, decode_with_fallback, guard_decode, is_out_of_memory, tiled_decode


def pointwise_decode(z):
    """A decoder without spatial context: tiling must reproduce it exactly."""
    rgb = torch.tanh(z[:, :3] * 0.7 + z[:, 3:4] * 0.2)
    return F.interpolate(rgb, scale_factor=8, mode="nearest")


def smooth_decode(z):
    """With a 3x3 neighbourhood: tiles differ only near their own borders."""
    return F.interpolate(F.avg_pool2d(z[:, :3], 3, 1, 1, count_include_pad=False), scale_factor=8, mode="bilinear")


@pytest.mark.parametrize("shape,tile,overlap", [((1, 4, 20, 28), 8, 2), ((2, 4, 9, 16), 16, 4), ((1, 4, 5, 5), 8, 2)])
def test_tiled_decode_matches_the_full_decode(shape, tile, overlap):
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    full = pointwise_decode(z)
    tiled = tiled_decode(pointwise_decode, z, tile=tile, overlap=overlap)
    assert tiled.shape == full.shape
    assert torch.allclose(tiled, full, atol=1e-5)


def test_overlaps_are_blended_not_cut():
    z = torch.randn((1, 4, 24, 24), generator=torch.Generator().manual_seed(1))
    full = smooth_decode(z)
    tiled = tiled_decode(smooth_decode, z, tile=12, overlap=4)
    assert (tiled - full).abs().max() < 0.35 * (full.abs().max())
    assert (tiled - full).abs().mean() < 0.02


class OOMAbove:
    """Raises CUDA-style OOM for inputs bigger than ``limit`` latent cells a side."""

    def __init__(self, limit):
        self.limit = limit
        self.sizes = []

    def __call__(self, z):
        self.sizes.append(tuple(z.shape[-2:]))
        if max(z.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return pointwise_decode(z)


def test_fallback_retries_with_shrinking_tiles():
    z = torch.randn((1, 4, 40, 40))
    decode = OOMAbove(limit=20)
    retries = []
    out = decode_with_fallback(decode, z, tiles=(32, 16, 8), on_retry=retries.append)
    assert retries == [32, 16]  # 32 still failed, 16 worked
    assert torch.allclose(out, pointwise_decode(z), atol=1e-5)


def test_fallback_gives_a_clear_error_when_every_size_fails():
    z = torch.randn((1, 4, 40, 40))
    with pytest.raises(OutOfMemoryError, match="Out of memory while decoding the 320x320 image"):
        decode_with_fallback(OOMAbove(limit=2), z, tiles=(16, 8))


def test_other_errors_pass_through():
    def broken(z):
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        decode_with_fallback(broken, torch.zeros((1, 4, 8, 8)))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_guard_decode_wraps_and_restores_the_module_method():
    class Vae(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.limit = OOMAbove(limit=8)

        def decode(self, z):
            return self.limit(z)

    vae = Vae()
    z = torch.randn((1, 4, 16, 16))
    with pytest.raises(torch.OutOfMemoryError):
        vae.decode(z)
    with guard_decode(vae, tiles=(8,)):
        out = vae.decode(z)
        with guard_decode(vae):  # re-entrant
            vae.decode(z)
    assert out.shape == (1, 3, 128, 128)
    assert "decode" not in vae.__dict__
    with pytest.raises(torch.OutOfMemoryError):
        vae.decode(z)
