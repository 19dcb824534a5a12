"""TAESD in the madebyollin layout equals diffusers' AutoencoderTiny with converted weights."""
import torch

from inference.convert import taesd_diffusers_to_ours
from inference.models.taesd import TAESD


def test_taesd_matches_diffusers_autoencoder_tiny():
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    reference = AutoencoderTiny().eval()
    ours = TAESD().eval()
    ours.load_state_dict(taesd_diffusers_to_ours(reference.state_dict()), strict=True)
    image = torch.rand(1, 3, 64, 48) * 2 - 1
    latents = torch.randn(1, 4, 8, 6)
    with torch.no_grad():
        assert torch.allclose(ours.encode(image), reference.encode(image).latents, atol=1e-5)
        assert torch.allclose(ours.decode(latents), reference.decode(latents).sample, atol=1e-5)
    assert sum(p.numel() for p in ours.encoder.parameters()) == sum(p.numel() for p in reference.encoder.parameters())


def test_taesd_key_layout_is_the_original_one():
    keys = set(TAESD().state_dict())
    assert {"encoder.0.weight", "encoder.1.conv.0.weight", "encoder.14.weight",
            "decoder.1.weight", "decoder.3.conv.4.weight", "decoder.19.weight"} <= keys
    assert not any(".layers." in k for k in keys)
