"""The engine behind an interface: the in-process diffusion engine, and a fake
one that draws deterministic pictures for UI tests.

Both are driven from the service's single worker thread; only
``native_resolution`` and ``model_label`` may also be called from the UI
thread (they never load weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from inference.api import GenerationRequest, GenerationResult
from inference.errors import CancelledError, InferenceError, ModelFormatError
from inference.engine import DEFAULT_TILES, OutOfMemoryError

log = logging.getLogger(__name__)

FALLBACK_NATIVE = 512  # planning size for a model whose header cannot be read (its load will fail)

Progress = Callable[[int, int, object], None]  # (step, total, latents or None)
ShouldStop = Callable[[], bool]


class Engine(Protocol):
    def native_resolution(self, model_id: str) -> int: ...

    def model_label(self, model_id: str) -> str: ...

    def unet_in_channels(self, model_id: str) -> int: ...

    def ensure_loaded(self, model_id: str) -> None: ...

    def generate(self, model_id: str, request: GenerationRequest, progress: Optional[Progress],
                 should_stop: Optional[ShouldStop]) -> GenerationResult: ...

    def preview_image(self, model_id: str, latents) -> Optional[np.ndarray]: ...

    # Optional: a key naming the model's latent space (models with equal keys read each other's
    # latents); engines without it, or returning None, make refines start from pixels.
    def latent_space(self, model_id: str) -> Optional[str]: ...


def shares_latents(engine: object, model_a: str, model_b: str) -> bool:
    """Whether ``model_b`` reads the latents ``model_a`` makes (an engine without ``latent_space``,
    or a model whose headers can't be read, says no: refines then start from pixels)."""
    latent_space = getattr(engine, "latent_space", None)
    if latent_space is None:
        return False
    try:
        key = latent_space(model_a)
        return key is not None and key == latent_space(model_b)
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------- torch
@dataclass(frozen=True)
class ModelSpec:
    path: str | Path
    label: str = ""  # shown to the user and stored in layer metadata; default: the folder/file name
    native_resolution: Optional[int] = None  # default: the model family's
    resident: bool = False  # stays loaded (the live-preview model)
    dtype: Optional[str] = None  # default: fp16 on GPUs, fp32 on CPU
    vae_path: Optional[str | Path] = None
    unet_path: Optional[str | Path] = None  # a UNet-only file replacing the model's UNet


class TorchEngine:
    """The in-process engine for the editor: model ids mapped onto the engine facade
    (:class:`inference.engine.Engine`), which owns residency, loading, the
    out-of-memory retries and the tiled decode fallback. The facade keeps one
    ``Pipeline`` per loaded model (each with its prompt-embedding cache);
    resident models (the live preview) stay loaded, so at most the preview
    model and one final model are in memory."""

    def __init__(self, models: Mapping[str, ModelSpec], device: str = "cpu",
                 loader: Optional[Callable[..., object]] = None, decode_tiles: tuple[int, ...] = DEFAULT_TILES):
        from inference.engine import Engine

        self.models = dict(models)
        self.device = device
        self.engine = Engine(device, loader=loader, decode_tiles=decode_tiles)

    def set_models(self, specs: Mapping[str, ModelSpec]) -> None:
        """Add or replace model specs; the resident (live-preview) ones are exactly those flagged
        resident in ``specs``. A model already in memory is not reloaded by a residency change."""
        resident = {model_id for model_id, spec in specs.items() if spec.resident}
        self.models.update(specs)
        for model_id, spec in list(self.models.items()):
            if spec.resident != (model_id in resident):
                self.models[model_id] = dataclasses.replace(spec, resident=model_id in resident)
        self.engine.set_residency([self._ref(model_id) for model_id in self.models])

    def _spec(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            raise ModelFormatError(f"no model configured as {model_id!r}") from None

    def _ref(self, model_id: str):
        from inference.engine import ModelRef

        spec = self._spec(model_id)
        return ModelRef(spec.path, vae_path=spec.vae_path, unet_path=spec.unet_path, dtype=spec.dtype,
                        resident=spec.resident, tag=model_id)

    def _id_of(self, ref) -> str:
        return ref.tag

    @property
    def loads(self) -> list[str]:
        """Model ids in load order (diagnostics, tests)."""
        return [self._id_of(ref) for ref in self.engine.loads]

    def model_label(self, model_id: str) -> str:
        spec = self._spec(model_id)
        return spec.label or Path(spec.path).name

    def native_resolution(self, model_id: str) -> int:
        """The configured size, else the model's own (from its config or family, the same
        number the CLI renders at); a planning fallback when the headers cannot be read."""
        spec = self._spec(model_id)
        if spec.native_resolution:
            return int(spec.native_resolution)
        try:
            return self.engine.native_resolution(self._ref(model_id))
        except InferenceError:  # the load on the worker reports the real problem
            return FALLBACK_NATIVE

    def unet_in_channels(self, model_id: str) -> int:
        """4 (ordinary), 9 (inpainting) or 8 (InstructPix2Pix); 4 when the headers cannot be read."""
        try:
            return int(self.engine.info(self._ref(model_id)).unet_in_channels or 4)
        except InferenceError:
            return 4

    def loaded(self) -> list[str]:
        return [self._id_of(ref) for ref in self.engine.loaded()]

    def unload(self, keep: tuple[str, ...] = (), include_resident: bool = False) -> None:
        self.engine.unload(keep=tuple(self._ref(model_id) for model_id in keep), include_resident=include_resident)

    def ensure_loaded(self, model_id: str) -> None:
        self._pipeline(model_id)

    def _pipeline(self, model_id: str):
        return self.engine.load(self._ref(model_id))

    def generate(self, model_id: str, request: GenerationRequest, progress: Optional[Progress] = None,
                 should_stop: Optional[ShouldStop] = None) -> GenerationResult:
        ref = self._ref(model_id)
        try:
            # The result keeps its latents (a few kB): a final render refines a live preview from
            # them rather than from its pixels, whose VAE round trip is lossy (issue 20).
            result = self.engine.generate(ref, request, progress=progress, should_stop=should_stop,
                                          return_latents=True)
        except OutOfMemoryError as exc:
            # The facade names the model by its file; the user knows it by its label.
            raise OutOfMemoryError(str(exc).replace(ref.label, self.model_label(model_id))) from None
        latents = getattr(result.latents, "ndim", 0) == 4 and result.latents.shape[0] == 1
        result.latents = result.latents[0].float().cpu().numpy() if latents else None
        return result

    def latent_space(self, model_id: str) -> Optional[str]:
        """Models with the same key read each other's latents (same family, latent channels and
        normalisation, same VAE file if one is configured); None: never share (FLUX, unreadable)."""
        spec = self._spec(model_id)
        try:
            info = self.engine.info(self._ref(model_id))
        except InferenceError:
            return None
        if not info.family or info.family.startswith("flux") or not info.latent_channels:
            return None
        return "|".join(str(part) for part in (info.family, info.latent_channels, info.latent_scaling_factor,
                                               info.latents_mean, info.latents_std, spec.vae_path or ""))

    def preview_image(self, model_id: str, latents) -> Optional[np.ndarray]:
        return self.engine.preview_image(self._ref(model_id), latents)


# --------------------------------------------------------------------------- fake
def _request_colour(request: GenerationRequest) -> np.ndarray:
    digest = hashlib.blake2b(f"{request.prompt}|{request.seed}".encode(), digest_size=3).digest()
    return np.frombuffer(digest, np.uint8).astype(np.float32)


def fake_image(request: GenerationRequest) -> np.ndarray:
    """Deterministic stand-in for a generation: a gradient in a colour derived
    from (prompt, seed); img2img mixes it into the init image by strength;
    inpainting only changes the masked pixels."""
    h, w = request.height, request.width
    colour = _request_colour(request)
    ramp = np.linspace(0.6, 1.0, w, dtype=np.float32)[None, :, None]
    picture = np.clip(colour[None, None, :] * ramp + np.zeros((h, 1, 1), np.float32), 0, 255)
    if request.init_image is not None:
        init = np.asarray(request.init_image)[..., :3].astype(np.float32)
        s = float(request.strength)
        picture = init * (1 - s) + picture * s
        if request.mask is not None:
            m = (np.asarray(request.mask) >= 128)[..., None]
            picture = np.where(m, picture, init)
    return np.rint(picture).astype(np.uint8)


def _steps_run(request: GenerationRequest) -> int:
    """The steps the real engine runs: img2img and inpainting below strength 1 skip the first
    (1 − strength) share of the schedule, as diffusers does."""
    if request.init_image is not None and request.strength < 1.0:
        return max(1, int(request.steps * request.strength))
    return max(1, request.steps)


class FakeEngine:
    """Engine double for tests and UI work without a model.

    ``delay`` is the time per generation (spread over the steps, so cancel is
    honoured within one step); ``fail`` is raised at ``fail_at_step``;
    ``load_errors`` maps a model id to the error loading it raises; when
    ``gate`` is given, every step waits for it. It counts calls and the
    largest number of generations that ever ran at once.
    """

    def __init__(self, *, native_resolution: int = 64, delay: float = 0.0, fail: Optional[BaseException] = None,
                 fail_at_step: int = 0, load_errors: Optional[Mapping[str, BaseException]] = None,
                 gate: Optional[threading.Event] = None, labels: Optional[Mapping[str, str]] = None,
                 in_channels: int = 4):
        self.native = native_resolution
        self.in_channels = in_channels
        self.delay = delay
        self.fail = fail
        self.fail_at_step = fail_at_step
        self.load_errors = dict(load_errors or {})
        self.gate = gate
        self.labels = dict(labels or {})
        self.calls: list[tuple[str, GenerationRequest]] = []
        self.loaded_models: list[str] = []
        self.steps_run = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def native_resolution(self, model_id: str) -> int:
        return self.native

    def unet_in_channels(self, model_id: str) -> int:
        return self.in_channels

    def model_label(self, model_id: str) -> str:
        return self.labels.get(model_id, f"fake-{model_id}")

    def latent_space(self, model_id: str) -> Optional[str]:
        return None  # fake images have no latents

    def ensure_loaded(self, model_id: str) -> None:
        if model_id in self.load_errors:
            raise self.load_errors[model_id]
        if model_id not in self.loaded_models:
            self.loaded_models.append(model_id)

    def _wait_gate(self, should_stop: Optional[ShouldStop]) -> None:
        while self.gate is not None and not self.gate.wait(0.005):
            if should_stop is not None and should_stop():
                return

    def generate(self, model_id: str, request: GenerationRequest, progress: Optional[Progress] = None,
                 should_stop: Optional[ShouldStop] = None) -> GenerationResult:
        self.ensure_loaded(model_id)
        with self._lock:
            self.calls.append((model_id, request))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            total = _steps_run(request)
            image = fake_image(request)
            for step in range(total):
                self._wait_gate(should_stop)
                if should_stop is not None and should_stop():
                    raise CancelledError(f"sampling cancelled before step {step + 1} of {total}")
                if self.fail is not None and step == self.fail_at_step:
                    raise self.fail
                if self.delay:
                    time.sleep(self.delay / total)
                with self._lock:
                    self.steps_run += 1
                if progress is not None:
                    progress(step + 1, total, image)  # the fake's "latents" are the image itself
            return GenerationResult(image, request.seed, None, {"mode": request.mode(), "steps_run": total})
        finally:
            with self._lock:
                self.in_flight -= 1

    def preview_image(self, model_id: str, latents) -> Optional[np.ndarray]:
        return None if latents is None else np.asarray(latents)
