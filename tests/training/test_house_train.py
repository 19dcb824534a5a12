"""The house trainer's part-weighted loss: weights follow the scene parts and their latents."""
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from training.house.scene import random_scene
from training.house.captions import training_attributes
from training.house.train import PART_WEIGHTS, latent_batch, scene_batch, weighted_mse


def test_weighted_mse_without_or_with_uniform_weights_is_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 4, 16, 16, generator=g), torch.randn(4, 4, 16, 16, generator=g)
    plain = F.mse_loss(pred, target)
    assert torch.allclose(weighted_mse(pred, target, None), plain)
    assert torch.allclose(weighted_mse(pred, target, torch.full((4, 1, 16, 16), 3.5)), plain)


@settings(max_examples=25, deadline=None)
@given(gain=st.floats(1.5, 20.0), seed=st.integers(0, 2**16))
def test_weighted_mse_counts_errors_in_heavy_cells_more(gain, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(2, 4, 16, 16, generator=g)
    weights = torch.ones(2, 1, 16, 16)
    weights[:, :, 4:8, 4:8] = gain
    error_in_heavy, error_in_light = target.clone(), target.clone()
    error_in_heavy[:, :, 5, 5] += 1.0
    error_in_light[:, :, 12, 12] += 1.0
    heavy = weighted_mse(error_in_heavy, target, weights)
    light = weighted_mse(error_in_light, target, weights)
    # One unit error in 4 channels of one cell: the ratio of the two losses is the cell weights' ratio.
    assert abs(float(heavy / light) - gain) < 1e-4 * gain


def test_scene_weights_lift_exactly_the_weighted_parts():
    seed = 0
    _, attrs, w = scene_batch(seed, 3, with_weights=True)
    for k in range(3):
        _, truth = random_scene(seed + k, 128, 128, accept=training_attributes)
        expected = np.ones((128, 128), np.float32)
        for part, gain in PART_WEIGHTS.items():
            if part in truth.masks:
                expected += gain * truth.masks[part]
        assert np.array_equal(w[k, 0].numpy(), expected)
        assert truth.attrs == attrs[k]
    assert float(w.max()) > 1.0


def test_latent_batch_mirrors_weights_with_their_latents():
    # A cache whose weights equal the latents' first channel: any mirroring that is not shared shows.
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(8, 4, 16, 16, generator=g)
    cache = {"mean": mean, "std": torch.zeros_like(mean), "scaling": 1.0, "weights": mean[:, :1].clone()}
    z, w = latent_batch(cache, torch.arange(8), torch.Generator().manual_seed(2), with_weights=True)
    assert torch.equal(w, z[:, :1])
    flipped = [not torch.equal(z[k], mean[k]) for k in range(8)]
    assert any(flipped) and not all(flipped)
    # Without weights, the same generator state draws the same latents.
    z2 = latent_batch(cache, torch.arange(8), torch.Generator().manual_seed(2))
    assert torch.equal(z, z2)
