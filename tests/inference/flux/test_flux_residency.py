"""Sequential component residency under a VRAM budget (inference/flux/residency.py).

No GPU here: the "device" is the CPU itself and every move goes through a spy mover, so the
policy's order, its resident bytes and its effect on the pixels are checked by bookkeeping; the
compressed-layer test moves onto the meta device, a real move that keeps dtypes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from flux_models import build_flux
from inference.api import GenerationRequest
from inference.cli import main
from inference.engine import Engine, ModelRef
from inference.flux.loader import load_flux_folder
from inference.flux.pipeline import FluxPipeline
from inference.flux.residency import COMPONENTS, Residency, module_bytes
from inference.tiled_decode import OutOfMemoryError


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return build_flux(tmp_path_factory.mktemp("flux_residency"), dev=False, seed=5)


@pytest.fixture(scope="module")
def baseline(schnell):
    """All-resident images: txt2img, then img2img of it with the same prompt."""
    pipeline = FluxPipeline(load_flux_folder(schnell))
    first = pipeline.generate(_txt2img()).image
    return first, pipeline.generate(_img2img(first)).image


def _txt2img() -> GenerationRequest:
    return GenerationRequest(prompt="a red boat at sunset", width=64, height=64, steps=2, seed=3, guidance=0.0)


def _img2img(canvas: np.ndarray) -> GenerationRequest:
    # The live preview: same prompt, only the canvas changes.
    return GenerationRequest(prompt="a red boat at sunset", width=64, height=64, steps=2, seed=4, guidance=0.0,
                             init_image=255 - canvas, strength=0.6)


def _spied(model, budget: int):
    """A Residency whose mover records each call; the direction comes from where the policy says
    the component is before the call (home ⇄ device share the CPU here)."""
    sizes = {name: module_bytes(getattr(model, name)) for name in COMPONENTS}
    names = {id(getattr(model, name)): name for name in COMPONENTS}
    calls: list[tuple[str, bool]] = []
    resident: set[str] = set()
    peaks: list[int] = []
    holder: dict = {}

    def mover(module, target):
        name = names[id(module)]
        onto = name not in holder["residency"].resident  # not there yet: this call brings it
        calls.append((name, onto))
        (resident.add if onto else resident.discard)(name)
        peaks.append(sum(sizes[n] for n in resident))
        return module.to(target)

    residency = Residency(model, torch.device("cpu"), budget, mover=mover)
    holder["residency"] = residency
    return residency, calls, peaks, sizes


@pytest.mark.parametrize("slack", [0, 600_000])
def test_sequential_order_budget_pixels_and_prompt_cache(schnell, baseline, slack):
    model = load_flux_folder(schnell)
    sizes = {name: module_bytes(getattr(model, name)) for name in COMPONENTS}
    budget = max(sizes.values()) + slack  # below the whole model: components take turns
    assert budget < sum(sizes.values())
    residency, calls, peaks, _ = _spied(model, budget)
    assert residency.sequential and residency.resident == ()
    pipeline = FluxPipeline(model, residency=residency)

    first = pipeline.generate(_txt2img()).image
    onto = [name for name, in_ in calls if in_]
    # (a) text encoders, then the transformer, then the VAE — each brought once.
    assert onto == ["clip", "t5", "transformer", "vae"], calls
    # (b) never more than the budget on the device, counted by the spy and by the policy.
    assert max(peaks) <= budget and residency.peak <= budget
    assert all(move.resident_bytes <= budget for move in residency.log)
    assert [(m.name, m.onto_device) for m in residency.log] == calls
    # (c) bit-identical to the all-resident run.
    assert np.array_equal(first, baseline[0])

    # (d) same prompt, new canvas: the text encoders are never moved (the prompt cache holds).
    before = len(calls)
    second = pipeline.generate(_img2img(first)).image
    assert not [c for c in calls[before:] if c[0] in ("clip", "t5")], calls[before:]
    assert np.array_equal(second, baseline[1]) and max(peaks) <= budget


def test_enough_budget_moves_nothing(schnell, baseline):
    model = load_flux_folder(schnell)
    total = sum(module_bytes(getattr(model, name)) for name in COMPONENTS)
    for budget in (None, total):
        residency, calls, _, _ = _spied(model, budget)
        assert not residency.sequential and set(residency.resident) == set(COMPONENTS)
        assert np.array_equal(FluxPipeline(model, residency=residency).generate(_txt2img()).image, baseline[0])
        assert calls == []


def test_a_component_over_the_budget_is_one_line(schnell):
    model = load_flux_folder(schnell)
    residency = Residency(model, torch.device("cpu"), module_bytes(model.vae))  # CLIP alone is bigger
    with pytest.raises(OutOfMemoryError, match="clip needs .* VRAM budget") as caught:
        FluxPipeline(model, residency=residency).generate(_txt2img())
    assert "\n" not in str(caught.value)


def test_compressed_layers_stay_compressed_when_moved():
    from types import SimpleNamespace

    from inference.flux.quant import Compressed, CompressedLinear

    weight = torch.randn(8, 16).to(torch.float8_e4m3fn)
    layer = CompressedLinear(Compressed(weight, "F8_E4M3", (8, 16), torch.tensor(0.5)), torch.zeros(8),
                             torch.float32)
    text = torch.nn.Linear(4, 4)
    model = SimpleNamespace(clip=text, t5=None, transformer=layer, vae=None)
    def mover(module, target):  # the real `.to` onto the device; back from meta needs to_empty
        return module.to(target) if target.type == "meta" else module.to_empty(device=target)

    residency = Residency(model, torch.device("meta"), module_bytes(layer), mover=mover)  # one at a time
    assert residency.sequential and residency.sizes["transformer"] == 8 * 16 + 4 + 8 * 4
    with residency.use("clip"):
        assert text.weight.device.type == "meta"
    with residency.use("transformer"):
        assert layer.qweight.device.type == "meta" and layer.qweight.dtype == torch.float8_e4m3fn
        assert text.weight.device.type == "cpu"  # evicted to make room
    assert residency.peak <= module_bytes(layer)


def test_engine_budget_and_cli_flag(schnell, baseline, tmp_path, capsys):
    from PIL import Image

    model_bytes = sum(module_bytes(getattr(load_flux_folder(schnell), n)) for n in COMPONENTS)
    engine = Engine("cpu", vram_budget=model_bytes - 1)
    pipeline = engine.load(ModelRef(schnell))
    assert pipeline.residency.sequential and pipeline.residency.resident == ()
    assert np.array_equal(engine.generate(ModelRef(schnell), _txt2img()).image, baseline[0])
    assert pipeline.residency.peak <= model_bytes - 1
    assert engine._offloaded_load  # the weight files exceed the budget: read onto the CPU first
    roomy = Engine("cpu").load(ModelRef(schnell))  # CPU default: no limit, nothing moves
    assert not roomy.residency.sequential
    # The file-size guess (fp32 files + headers) says "too big", the loaded modules fit exactly:
    # the engine settles them all onto the device and the policy stays out of the way.
    exact = Engine("cpu", vram_budget=model_bytes)
    settled = exact.load(ModelRef(schnell)).residency
    assert exact._offloaded_load and not settled.sequential and set(settled.resident) == set(COMPONENTS)
    with pytest.raises(Exception, match="vram budget"):
        Engine("cpu", vram_budget=0)

    out = tmp_path / "b.png"
    args = ["generate", "--model", str(schnell), "--prompt", "a red boat at sunset", "--width", "64", "--height",
            "64", "--steps", "2", "--seed", "3", "--guidance", "0"]
    assert main(args + ["--vram-budget", f"{(model_bytes - 1) / 2**30:.6f}", "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), baseline[0])
    for bad in ("0", "-1", "nan", "inf", "lots"):
        capsys.readouterr()
        assert main(args + ["--vram-budget", bad, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--vram-budget" in err[0] and bad in err[0], err
    capsys.readouterr()
    assert main(args + ["--vram-budget", "0.0001", "--out", str(tmp_path / "y.png")]) == 2  # < CLIP alone
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VRAM budget" in err[0] and not (tmp_path / "y.png").exists(), err


def test_previews_mid_render_do_not_evict_the_transformer(schnell, baseline):
    model_bytes = sum(module_bytes(getattr(load_flux_folder(schnell), n)) for n in COMPONENTS)
    engine, ref = Engine("cpu", vram_budget=model_bytes - 1), ModelRef(schnell)
    residency = engine.load(ref).residency
    previews: list = []

    def progress(step, total, latents):
        previews.append((engine.preview_image(ref, latents), residency.where("transformer").type))

    image = engine.generate(ref, _txt2img(), progress=progress).image
    assert np.array_equal(image, baseline[0]) and len(previews) == 2
    assert all(preview.shape == (64, 64, 3) for preview, _ in previews)
    # The VAE came to the device once, for the final decode — never for a preview.
    assert [m.name for m in residency.log if m.onto_device] == ["clip", "t5", "transformer", "vae"]


def test_default_budget_is_read_once_per_load(schnell, monkeypatch):
    """On CUDA the default budget is the free memory: read again after loading, it would no longer
    count the model just loaded and push a model that fits into taking turns."""
    import inference.flux.residency as residency_module

    readings = iter([10**12, 1])  # before the load: plenty; after it: nothing left
    monkeypatch.setattr(residency_module, "default_budget", lambda device: next(readings))
    residency = Engine("cpu").load(ModelRef(schnell)).residency
    assert residency.budget == 10**12 and not residency.sequential
