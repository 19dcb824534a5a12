"""The FLUX transformer against diffusers' FluxTransformer2DModel: outputs on tiny random weights,
and the full-size dev/schnell layouts (built on the meta device, header-only)."""
from __future__ import annotations

import pytest
import torch

from inference.flux.config import (
    FLUX_DEV,
    FLUX_SCHNELL,
    FluxConfig,
    flux_config_from_shapes,
)
from inference.flux.convert import diffusers_to_bfl
from inference.flux.rope import apply_rope, rope_frequencies
from inference.flux.sampling import image_ids, pack_latents, text_ids, unpack_latents
from inference.flux.transformer import FluxTransformer

# FluxTransformer2DModel's full-size parameter counts (diffusers' default config).
DEV_PARAMETERS = 11_901_408_320
SCHNELL_PARAMETERS = 11_891_178_560


def _tiny_reference(guidance: bool):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(3)
    model = FluxTransformer2DModel(in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
                                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24,
                                   guidance_embeds=guidance, axes_dims_rope=(4, 6, 6)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def _ours_from(reference) -> FluxTransformer:
    config = FluxConfig.from_diffusers(reference.config)
    with torch.device("meta"):
        model = FluxTransformer(config)
    model.load_state_dict(diffusers_to_bfl(dict(reference.state_dict()), config), strict=True, assign=True)
    return model.eval()


@pytest.mark.parametrize("guidance", [False, True])
def test_transformer_equals_diffusers(guidance):
    reference = _tiny_reference(guidance)
    ours = _ours_from(reference)
    assert ours.config.guidance_embed is guidance and ours.config.head_dim == 16
    g = torch.Generator().manual_seed(0)
    img, txt, y = torch.randn(2, 24, 64, generator=g), torch.randn(2, 10, 32, generator=g), torch.randn(2, 24, generator=g)
    img_pos, txt_pos = image_ids(4, 6), text_ids(10)
    sigma = torch.tensor([0.7, 0.25])
    scale = torch.tensor([3.5, 1.0]) if guidance else None
    with torch.no_grad():
        expected = reference(hidden_states=img, encoder_hidden_states=txt, pooled_projections=y, timestep=sigma,
                             img_ids=img_pos, txt_ids=txt_pos, guidance=scale, return_dict=False)[0]
        got = ours(img, img_pos, txt, txt_pos, sigma, y, scale)
    assert expected.abs().mean() > 0.3
    assert (got - expected).abs().max() < 1e-5


def test_rope_equals_diffusers():
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.cat([text_ids(5), image_ids(6, 7, index=1)])
    cos, sin = rope_frequencies(ids, (16, 56, 56), 10_000)
    ref_cos, ref_sin = FluxPosEmbed(10_000, [16, 56, 56])(ids)
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)
    x = torch.randn(1, 3, ids.shape[0], 128)
    expected = apply_rotary_emb(x.transpose(1, 2), (ref_cos, ref_sin), sequence_dim=1).transpose(1, 2)
    assert torch.equal(apply_rope(x, cos, sin), expected)


def test_packing_and_ids_equal_flux_pipeline():
    from diffusers import FluxPipeline

    latents = torch.randn(1, 16, 8, 12)
    packed = pack_latents(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 1, 16, 8, 12))
    assert torch.equal(unpack_latents(packed, 8, 12), latents)
    assert torch.equal(FluxPipeline._unpack_latents(packed, 64, 96, 8), latents)
    assert torch.equal(image_ids(4, 6), FluxPipeline._prepare_latent_image_ids(1, 4, 6, "cpu", torch.float32))


def _meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("config,guidance,count", [(FLUX_DEV, True, DEV_PARAMETERS),
                                                   (FLUX_SCHNELL, False, SCHNELL_PARAMETERS)])
def test_full_size_layout_matches_diffusers(config, guidance, count):
    """Header-only: the 12B layouts on meta. Parameter counts equal; diffusers' own BFL → diffusers
    converter maps our keys onto its model with nothing missing or left over, and ours maps back."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    with torch.device("meta"):
        ours = FluxTransformer(config)
        reference = FluxTransformer2DModel(guidance_embeds=guidance)
    assert FluxConfig.from_diffusers(reference.config) == config
    assert flux_config_from_shapes(_meta_shapes(ours)) == config
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == count
    as_diffusers = convert_flux_transformer_checkpoint_to_diffusers(
        {f"model.diffusion_model.{k}": v for k, v in ours.state_dict().items()})
    assert {k: tuple(v.shape) for k, v in as_diffusers.items()} == _meta_shapes(reference)
    back = diffusers_to_bfl(dict(reference.state_dict()), config)
    assert {k: tuple(v.shape) for k, v in back.items()} == _meta_shapes(ours)
    assert "double_blocks.18.img_attn.norm.query_norm.scale" in back and "single_blocks.37.linear1.weight" in back
    assert ("guidance_in.in_layer.weight" in back) is guidance


def test_bfl_single_file_loads_by_prefix_strip(tmp_path):
    """A BFL-layout file (all-in-one style: prefixed transformer keys plus a VAE key) loads with
    its config read from the shapes and gives the same output."""
    from inference.flux.loader import load_bfl_transformer
    from inference.formats.safetensors_file import save_tensors

    reference = _tiny_reference(True)
    ours = _ours_from(reference)
    tensors = {f"model.diffusion_model.{k}": v.contiguous() for k, v in ours.state_dict().items()}
    tensors["vae.decoder.conv_in.weight"] = torch.zeros(2, 2)
    save_tensors(tensors, tmp_path / "flux.safetensors")
    loaded = load_bfl_transformer(tmp_path / "flux.safetensors", axes_dim=(4, 6, 6))
    assert loaded.config == ours.config
    g = torch.Generator().manual_seed(4)
    args = (torch.randn(1, 24, 64, generator=g), image_ids(4, 6), torch.randn(1, 7, 32, generator=g), text_ids(7),
            torch.tensor([0.5]), torch.randn(1, 24, generator=g), torch.tensor([2.0]))
    with torch.no_grad():
        assert torch.equal(loaded(*args), ours(*args))
