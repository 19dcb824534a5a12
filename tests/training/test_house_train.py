"""The house trainer's part-weighted loss (weights follow the scene parts and their latents) and
its decoder fine-tune on noised latents (--latent-noise)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.models.vae import AutoencoderKL
from training.house import configs

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


@pytest.mark.parametrize("argv, words", [
    (["--latent-noise", "-0.1", "--init", "assets/house"], "--latent-noise -0.1 must be between 0 and 1"),
    (["--latent-noise", "nan", "--init", "assets/house"], "--latent-noise nan must be between 0 and 1"),
    (["--latent-noise", "0.05"], "--latent-noise fine-tunes a decoder: give --init"),
])
def test_hostile_latent_noise_is_refused_in_one_line(tmp_path, capsys, argv, words):
    from training.house.__main__ import main

    assert main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_latent_noise_fine_tunes_the_decoder_on_noised_latents_and_leaves_the_encoder(tmp_path, monkeypatch):
    from training.house import train as T

    torch.manual_seed(0)
    init_vae = AutoencoderKL(configs.VAE)
    init = {"vae": init_vae.state_dict(), "scaling": 0.3}
    seen = []
    original = AutoencoderKL.decode

    def recording(self, z):
        seen.append(z.detach().clone())
        return original(self, z)

    monkeypatch.setattr(AutoencoderKL, "decode", recording)
    runs = {}
    for noise in (0.0, 0.3):
        seen.clear()
        out = tmp_path / f"noise{noise}"
        out.mkdir()
        # Exactly two steps: the stage clock is replaced by a count of the decoder's calls.
        monkeypatch.setattr(T.Timer, "done", lambda self: len(seen) >= 2)
        vae = T.train_vae(out, T.RunState(out), budget=10.0, device=torch.device("cpu"), save_every=1e9, seed=4,
                          init=init, latent_noise=noise)
        runs[noise] = (vae, [z.clone() for z in seen])
    quiet, noisy = runs[0.0][1], runs[0.3][1]
    assert len(quiet) == len(noisy) == 2
    # Same scenes, crops and posterior draws; the noisy run's first latent differs only by the added noise.
    added = (noisy[0] - quiet[0]).pow(2).mean(dim=1).sqrt()
    assert 0.0 < float(added.mean()) < 0.3 / 0.3
    for name, tensor in runs[0.3][0].encoder.state_dict().items():
        assert torch.equal(tensor, init["vae"]["encoder." + name])  # the encoder is frozen
