"""House-model export: LDM→diffusers maps, folders loadable by diffusers and by our engine, same images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.house import configs
from training.house.export import unet_ldm_to_diffusers, vae_ldm_to_diffusers, write_folder
from inference.convert import unet_diffusers_to_ldm, vae_diffusers_to_ldm
from inference.models.clip_text import CLIPTextModel
from inference.models.unet import UNetModel
from inference.models.vae import AutoencoderKL


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("house")
    vae = _perturbed(AutoencoderKL(configs.VAE), 1)
    text = _perturbed(CLIPTextModel(configs.TEXT), 2)
    unet = _perturbed(UNetModel(configs.UNET), 3)
    full = write_folder(root / "full", unet, vae, text, configs.FULL_SCHEDULER)
    preview = write_folder(root / "preview", unet, vae, text, configs.PREVIEW_SCHEDULER)
    return full, preview, unet, vae


def test_inverse_maps_round_trip():
    unet = UNetModel(configs.UNET)
    state = unet.state_dict()
    back = unet_diffusers_to_ldm(unet_ldm_to_diffusers(state, configs.UNET), configs.UNET)
    assert set(back) == set(state)
    vae = AutoencoderKL(configs.VAE)
    vstate = vae.state_dict()
    vback = vae_diffusers_to_ldm(vae_ldm_to_diffusers(vstate, configs.VAE), configs.VAE)
    assert set(vback) == set(vstate)
    assert all(vback[k].shape == vstate[k].shape for k in vstate)


def test_diffusers_modules_load_strictly(folders):
    from diffusers import AutoencoderKL as DAutoencoderKL, UNet2DConditionModel

    full, _, unet, vae = folders
    dunet = UNet2DConditionModel.from_pretrained(full / "unet", dtype=torch.float32)
    x, ctx, t = torch.randn(1, 4, 16, 24), torch.randn(1, 77, configs.CONTEXT_DIM), torch.tensor([500.0])
    ours = UNetModel(configs.UNET)
    ours.load_state_dict({k: v.half().float() for k, v in unet.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(dunet(x, t, ctx).sample, ours(x, t, ctx), atol=2e-4, rtol=1e-3)
    dvae = DAutoencoderKL.from_pretrained(full / "vae", dtype=torch.float32)
    with torch.no_grad():
        z = torch.randn(1, 4, 16, 16)
        ref = dvae.decode(z).sample
        ovae = AutoencoderKL(configs.VAE)
        ovae.load_state_dict({k: v.half().float() for k, v in vae.state_dict().items()})
        torch.testing.assert_close(ref, ovae.decode(z), atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("which,steps,guidance", [("full", 3, 4.0), ("preview", 1, 0.0)])
def test_diffusers_pipeline_and_engine_agree(folders, which, steps, guidance):
    from diffusers import StableDiffusionPipeline

    from inference.loader import load_model
    from inference.pipeline import GenerationRequest, Pipeline

    folder = folders[0] if which == "full" else folders[1]
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, safety_checker=None)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    ref = pipe("a red house at night", num_inference_steps=steps, guidance_scale=guidance, height=128, width=192,
               generator=torch.Generator().manual_seed(7), output_type="np").images[0]
    model = load_model(folder, dtype="float32")
    assert model.prediction_type == "v_prediction"
    ours = Pipeline(model).generate(GenerationRequest("a red house at night", seed=7, steps=steps, guidance=guidance,
                                                      width=192, height=128)).image
    ref8 = np.round(ref * 255).astype(np.int16)
    assert np.abs(ref8 - ours.astype(np.int16)).max() <= 2


def test_size_budget(folders):
    full, preview, _, _ = folders
    total = sum(f.stat().st_size for d in (full, preview) for f in d.rglob("*") if f.is_file())
    assert total <= 60 * 2**20


def test_evaluate_and_bench_run(folders):
    from training.house.evaluate import evaluate

    result = evaluate(folders[0].parent, prompts=1, inpaint_cases=1)
    assert result["inpaint_outside_identical"] is True
    assert 0.0 <= result["outpaint_horizon_continuity_of_the_prefill"] <= 1.0
    assert 0.0 <= result["adherence_full"]["mean"] <= 1.0
    assert set(result["adherence_one_step"]) >= {"time", "sky", "terrain", "water", "vegetation", "object"}


SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "house"


@pytest.mark.skipif(not (SHIPPED / "preview" / "model_index.json").exists(), reason="no shipped house model")
@pytest.mark.parametrize("which,steps,guidance", [("preview", 1, 0.0), ("full", 2, 4.0)])
def test_shipped_folders_load_in_diffusers_and_engine(which, steps, guidance):
    from diffusers import StableDiffusionPipeline

    from inference.loader import load_model
    from inference.pipeline import GenerationRequest, Pipeline

    folder = SHIPPED / which
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, safety_checker=None)
    ref = pipe("a red house at dawn", num_inference_steps=steps, guidance_scale=guidance, height=128, width=128,
               generator=torch.Generator().manual_seed(3), output_type="np").images[0]
    ours = Pipeline(load_model(folder, dtype="float32")).generate(
        GenerationRequest("a red house at dawn", seed=3, steps=steps, guidance=guidance, width=128, height=128)).image
    assert np.abs(np.round(ref * 255).astype(np.int16) - ours.astype(np.int16)).max() <= 2
    total = sum(f.stat().st_size for d in ("full", "preview") for f in (SHIPPED / d).rglob("*") if f.is_file())
    assert total <= 60 * 2**20


def _fake_run(folder: Path, scaling: float) -> Path:
    """A training folder as `train` leaves it: unet.pt (EMA weights, latent scale) and vae.pt."""
    unet, text, vae = UNetModel(configs.UNET), CLIPTextModel(configs.TEXT), _perturbed(AutoencoderKL(configs.VAE), 9)
    folder.mkdir()
    torch.save({"ema_unet": unet.state_dict(), "ema_text": text.state_dict(), "scaling": scaling}, folder / "unet.pt")
    torch.save({"model": vae.state_dict(), "step": 1}, folder / "vae.pt")
    return folder


def test_export_can_keep_an_earlier_decoder(folders, tmp_path):
    from training.house.export import export_checkpoint
    from inference.loader import load_model

    run = _fake_run(tmp_path / "run", configs.VAE.scaling_factor)
    source = folders[0].parent
    export_checkpoint(run, tmp_path / "out", vae_from=source)
    kept = load_model(tmp_path / "out" / "full", dtype="float32").vae.state_dict()
    wanted = load_model(source / "full", dtype="float32").vae.state_dict()
    own = torch.load(run / "vae.pt", weights_only=False)["model"]
    assert all(torch.equal(kept[k], wanted[k]) for k in wanted)
    assert not all(torch.equal(kept[k], own[k].half().float()) for k in own)
    # The editor's notes travel with every export: the full model's refine bound, and the preview
    # (no distilled student in this run: the UNet itself) renders canvas-start frames on its own.
    import json

    full_notes = json.loads((tmp_path / "out" / "full" / "house.json").read_text())
    preview_notes = json.loads((tmp_path / "out" / "preview" / "house.json").read_text())
    assert full_notes["refine_bound"] == configs.FULL_REFINE_BOUND == 0.035 and "refine_bound" not in preview_notes
    assert preview_notes["partial_denoise"] is True and preview_notes["distilled"] is False


def test_export_refuses_a_decoder_of_another_latent_scale(folders, tmp_path):
    from inference.errors import ModelFormatError
    from training.house.export import export_checkpoint

    run = _fake_run(tmp_path / "run", 0.5)
    with pytest.raises(ModelFormatError, match="latent scale"):
        export_checkpoint(run, tmp_path / "out", vae_from=folders[0].parent)
    assert not (tmp_path / "out").exists()


class _FakeVAE:
    """encode → decode stand-ins: `identity` gives back the input, otherwise a flat grey image."""

    dtype = torch.float32

    def __init__(self, identity: bool):
        self.identity = identity

    def encode_moments(self, x):
        return x, torch.zeros_like(x)

    def decode(self, z):
        return z if self.identity else torch.zeros_like(z)


def test_decoder_ceiling_is_the_rules_accuracy_on_what_the_decoder_gives_back():
    from training.house.evaluate import decoded_truth_accuracy, held_out_truths
    from training.house.rules import adherence, read_attributes

    truths = held_out_truths(12)
    on_renders: dict[str, list[bool]] = {}
    for attrs, img in truths:
        for group, ok in adherence(attrs, read_attributes(img)).items():
            on_renders.setdefault(group, []).append(ok)
    perfect = decoded_truth_accuracy(_FakeVAE(identity=True), truths)
    grey = decoded_truth_accuracy(_FakeVAE(identity=False), truths)
    assert set(perfect) == set(on_renders) | {"mean"}
    # A decoder that gives every scene back exactly scores what the rules score on the renders.
    for group, hits in on_renders.items():
        assert abs(perfect[group] - np.mean(hits)) <= 1e-3, group
    assert perfect["mean"] >= 0.9
    assert grey["mean"] < 0.5


def test_ceiling_cli_judges_a_run_checkpoint_and_refuses_a_missing_one(folders, tmp_path, capsys):
    from training.house.__main__ import main

    run = _fake_run(tmp_path / "run", configs.VAE.scaling_factor)
    assert main(["ceiling", "--vae", str(run / "vae.pt"), "--prompts", "2"]) == 0
    out = capsys.readouterr().out
    assert '"mean"' in out and str(run / "vae.pt") in out
    assert main(["ceiling", "--vae", str(tmp_path / "nope.pt"), "--prompts", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ceiling: ") and "nope.pt" in err and "\n" not in err
