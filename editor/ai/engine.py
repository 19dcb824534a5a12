"""The engine behind an interface: the in-process diffusion engine, and a fake
one that draws deterministic pictures for UI tests.

Both are driven from the service's single worker thread; only
``native_resolution`` and ``model_label`` may also be called from the UI
thread (they never load weights).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from inference.errors import CancelledError, InferenceError, ModelFormatError
from inference.pipeline import GenerationRequest, GenerationResult

from .tiled_decode import DEFAULT_TILES, OutOfMemoryError, free_memory, guard_decode, is_out_of_memory

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


# --------------------------------------------------------------------------- torch
@dataclass(frozen=True)
class ModelSpec:
    path: str | Path
    label: str = ""  # shown to the user and stored in layer metadata; default: the folder/file name
    native_resolution: Optional[int] = None  # default: the model family's
    resident: bool = False  # stays loaded (the live-preview model)
    dtype: Optional[str] = None  # default: fp16 on GPUs, fp32 on CPU
    vae_path: Optional[str | Path] = None


class TorchEngine:
    """The in-process engine: one ``Pipeline`` per loaded model (each keeps its
    prompt-embedding cache). Resident models stay loaded; loading any other
    model first unloads the non-resident ones, so at most the preview model
    and one final model are in memory."""

    def __init__(self, models: Mapping[str, ModelSpec], device: str = "cpu",
                 loader: Optional[Callable[..., object]] = None, decode_tiles: tuple[int, ...] = DEFAULT_TILES):
        from inference.loader import load_model

        self.models = dict(models)
        self.decode_tiles = decode_tiles  # latent tile sides for the out-of-memory decode retry
        self.device = device
        self._loader = loader or load_model
        self._pipelines: dict[str, object] = {}
        self._architectures: dict[str, tuple] = {}  # model id -> (family, UNet input channels)
        self._lock = threading.RLock()  # guards the dicts (short holds)
        self._load_lock = threading.Lock()  # one load at a time (long holds)
        self.loads: list[str] = []  # model ids in load order (diagnostics, tests)

    def _spec(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            raise ModelFormatError(f"no model configured as {model_id!r}") from None

    def model_label(self, model_id: str) -> str:
        spec = self._spec(model_id)
        return spec.label or Path(spec.path).name

    def _architecture(self, model_id: str):
        """(family, UNet input channels) from the loaded model, else from the file headers (no
        weights, no load lock); read once per model, None when the headers cannot be read."""
        with self._lock:
            if model_id in self._architectures:
                return self._architectures[model_id]
            pipeline = self._pipelines.get(model_id)
        if pipeline is not None:
            value = (pipeline.model.family, int(pipeline.model.unet.config.in_channels))
        else:
            from inference.loader import inspect_model
            from inference.registry import family_by_name

            try:
                report = inspect_model(self._spec(model_id).path)
                value = (family_by_name(report["family"]), int(report["unet_in_channels"]))
            except Exception:  # noqa: BLE001 - the load on the worker reports the real problem
                return None
        with self._lock:
            self._architectures[model_id] = value
        return value

    def native_resolution(self, model_id: str) -> int:
        spec = self._spec(model_id)
        if spec.native_resolution:
            return int(spec.native_resolution)
        architecture = self._architecture(model_id)
        return int(architecture[0].native_resolution) if architecture else FALLBACK_NATIVE

    def unet_in_channels(self, model_id: str) -> int:
        """4 (ordinary), 9 (inpainting) or 8 (InstructPix2Pix); 4 when the headers cannot be read."""
        architecture = self._architecture(model_id)
        return architecture[1] if architecture else 4

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._pipelines)

    def unload(self, keep: tuple[str, ...] = (), include_resident: bool = False) -> None:
        with self._lock:
            for model_id in list(self._pipelines):
                if model_id in keep:
                    continue
                if self.models[model_id].resident and not include_resident:
                    continue
                del self._pipelines[model_id]
        free_memory()

    def ensure_loaded(self, model_id: str) -> None:
        self._pipeline(model_id)

    def _pipeline(self, model_id: str):
        from inference.pipeline import Pipeline

        with self._lock:
            pipeline = self._pipelines.get(model_id)
        if pipeline is not None:
            return pipeline
        with self._load_lock:  # the UI thread's queries take only self._lock
            with self._lock:
                pipeline = self._pipelines.get(model_id)
            if pipeline is not None:
                return pipeline
            spec = self._spec(model_id)
            self.unload(keep=(model_id,))
            try:
                model = self._load(spec)
            except Exception as exc:  # noqa: BLE001
                if not is_out_of_memory(exc):
                    raise
                self.unload(keep=(model_id,), include_resident=True)
                try:
                    model = self._load(spec)
                except Exception as exc2:  # noqa: BLE001
                    if is_out_of_memory(exc2):
                        raise OutOfMemoryError(f"Not enough memory to load {self.model_label(model_id)}.") from None
                    raise
            pipeline = Pipeline(model)
            with self._lock:
                self._pipelines[model_id] = pipeline
                self.loads.append(model_id)
            return pipeline

    def _load(self, spec: ModelSpec):
        try:
            return self._loader(spec.path, device=self.device, dtype=spec.dtype, vae_path=spec.vae_path)
        except InferenceError:
            raise
        except OSError as exc:
            raise ModelFormatError(f"{spec.path}: cannot read the model ({exc})") from None

    def generate(self, model_id: str, request: GenerationRequest, progress: Optional[Progress] = None,
                 should_stop: Optional[ShouldStop] = None) -> GenerationResult:
        pipeline = self._pipeline(model_id)
        for attempt in (1, 2):
            try:
                with guard_decode(pipeline.model.vae, self.decode_tiles):
                    return pipeline.generate(request, progress=progress, should_stop=should_stop)
            except OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                if not is_out_of_memory(exc):
                    raise
                # Like ComfyUI: free the other models and try once more.
                log.warning("out of memory during sampling (attempt %d)", attempt)
                self.unload(keep=(model_id,), include_resident=True)
        raise OutOfMemoryError(
            f"Out of memory generating a {request.width}x{request.height} image with "
            f"{self.model_label(model_id)}. Try a smaller frame or fewer steps at once."
        )

    def preview_image(self, model_id: str, latents) -> Optional[np.ndarray]:
        import torch

        from inference.images import tensor_to_rgb
        from inference.pipeline import decode_latents

        if latents is None:
            return None
        pipeline = self._pipeline(model_id)
        with torch.no_grad():
            return tensor_to_rgb(decode_latents(pipeline.model, latents))


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
            total = max(1, request.steps)
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
