"""The engine facade: model residency, device, out-of-memory fallbacks, and the run of one request.

The CLI and the editor (and later the render farm's workers) drive the engine only through this
class and the torch-free `inference.api`. It keeps `Pipeline`s keyed by `ModelRef`: resident refs
(the live-preview model) stay loaded, loading any other model first unloads the non-resident ones,
so at most the preview model and one final model are in memory. On out-of-memory it frees the
other models and retries once (loading and sampling), and the VAE decode falls back to tiles.

Thread use: `generate`, `load` and `preview_image` run on one worker thread; `info` and
`native_resolution` may be called from any thread (they read headers, never weights).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .api import GenerationRequest, GenerationResult, ModelInfo, read_model_info
from .errors import InferenceError, ModelFormatError
from .samplers import registry as sampler_registry
from .tiled_decode import DEFAULT_TILES, OutOfMemoryError, free_memory, guard_decode, is_out_of_memory

log = logging.getLogger(__name__)

Progress = Callable[[int, int, object], None]  # (step, total, latents or None)
ShouldStop = Callable[[], bool]


def _pipeline_for(model, sd_pipeline, budget: int | None = None, loaded_on_device: bool = True):
    """The pipeline class that runs a loaded model: FLUX models get `FluxPipeline`, with their
    components' residency under `budget` bytes (`inference/flux/residency.py`)."""
    from .flux.loader import FluxModel

    if isinstance(model, FluxModel):
        from .flux.pipeline import FluxPipeline
        from .flux.residency import Residency

        residency = Residency(model, model.device, budget)
        residency.settle(loaded_on_device)
        return FluxPipeline(model, residency=residency)
    return sd_pipeline(model)


def warm_up_imports() -> None:
    """Import torch and the loading/sampling modules now (seconds), e.g. on a background thread
    at start-up, so the first generation does not pay for it."""
    from . import loader, pipeline  # noqa: F401


@dataclass(frozen=True)
class ModelRef:
    """Which model to run, and how: the key of a loaded pipeline."""

    path: str | Path
    vae_path: str | Path | None = None
    unet_path: str | Path | None = None  # a UNet-only file on top of `path`'s VAE and text encoders
    dtype: str | None = None  # default: fp16 on GPUs, fp32 on CPU
    prediction_type: str | None = None  # override for files that don't say (SD2 single files)
    # Stays loaded (the live-preview model). Not part of the identity: turning residency on or off
    # must not reload a model that is already in memory.
    resident: bool = field(default=False, compare=False)
    tag: str = ""  # tells apart two entries that load one file (the editor's model ids)

    @property
    def label(self) -> str:
        return Path(self.path).name


class Engine:
    def __init__(self, device: str = "cpu", loader: Callable[..., object] | None = None,
                 decode_tiles: tuple[int, ...] = DEFAULT_TILES, vram_budget: int | None = None):
        self.device = device
        # Bytes of FLUX weights allowed on the device at once; None: the device's free memory at
        # load time on CUDA, no limit elsewhere. Over it, components take turns on the device.
        if vram_budget is not None and (isinstance(vram_budget, bool) or not isinstance(vram_budget, int)
                                        or vram_budget <= 0):
            raise InferenceError(f"vram budget {vram_budget!r}: expected a positive number of bytes")
        self.vram_budget = vram_budget
        self.decode_tiles = decode_tiles  # latent tile sides for the out-of-memory decode retry
        self._loader = loader
        self._pipelines: dict[ModelRef, object] = {}
        self._infos: dict[tuple, ModelInfo] = {}
        self._loras: dict[tuple, object] = {}  # parsed LoRA files by (path, size, mtime)
        self._lock = threading.RLock()  # guards the dicts (short holds)
        self._load_lock = threading.Lock()  # one load at a time (long holds)
        self.loads: list[ModelRef] = []  # in load order (diagnostics, tests)

    # ------------------------------------------------------------------ facts (any thread)
    def info(self, ref: ModelRef | str | Path) -> ModelInfo:
        """`read_model_info`, cached by path, size and modification time."""
        ref = ref if isinstance(ref, ModelRef) else ModelRef(ref)
        path = Path(ref.path)
        try:
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns, ref.prediction_type)
        except OSError:
            raise ModelFormatError(f"{path}: no such file or folder") from None
        with self._lock:
            cached = self._infos.get(key)
        if cached is not None:
            return cached
        info = read_model_info(path, ref.prediction_type)
        with self._lock:
            self._infos[key] = info
        return info

    def native_resolution(self, ref: ModelRef) -> int:
        """The size the model was trained at, from its config or family (never loads weights)."""
        loaded = self._loaded(ref)
        if loaded is not None:
            return int(loaded.model.native_resolution)
        native = self.info(ref).native_resolution
        if native is None:
            raise ModelFormatError(f"{Path(ref.path).name}: not a model that renders images")
        return int(native)

    def request_warnings(self, ref: ModelRef, request: GenerationRequest, *, sampler_chosen: bool = False) -> list[str]:
        """One-line notes for the user before a render: a scheduler class of the model's that we
        replace (unless the user chose the sampler), a size far from the native one (SD models
        tile their scene beyond ~1.5× their size)."""
        notes: list[str] = []
        info = self.info(ref)
        # FLUX always samples with its own flow-matching Euler (= its scheduler class).
        substitution = None if (info.family or "").startswith("flux") else sampler_registry.scheduler_substitution(
            info.scheduler_class, request.sampler, explicit=sampler_chosen)
        if substitution:
            notes.append(substitution)
        native = info.native_resolution
        if native and max(request.width, request.height) > 1.5 * native:
            notes.append(f"{request.width}x{request.height} is well above {Path(ref.path).name}'s native "
                         f"{native}x{native}: expect repeated objects; render at {native} and upscale instead")
        return notes

    # ------------------------------------------------------------------ residency (worker thread)
    def _loaded(self, ref: ModelRef):
        with self._lock:
            return self._pipelines.get(ref)

    def loaded(self) -> list[ModelRef]:
        with self._lock:
            return list(self._pipelines)

    def set_residency(self, refs: list[ModelRef]) -> None:
        """Take the `resident` flags of `refs` for the loaded pipelines they name (no reload)."""
        with self._lock:
            for ref in refs:
                if ref in self._pipelines:
                    # Popping first matters: assigning to an existing key keeps the old key object.
                    self._pipelines[ref] = self._pipelines.pop(ref)

    def unload(self, keep: tuple[ModelRef, ...] = (), include_resident: bool = False) -> None:
        with self._lock:
            for ref in list(self._pipelines):
                if ref in keep or (ref.resident and not include_resident):
                    continue
                del self._pipelines[ref]
        free_memory()

    def load(self, ref: ModelRef):
        """The ref's `Pipeline`, loading it (and unloading non-resident others) when needed."""
        from .pipeline import Pipeline

        pipeline = self._loaded(ref)
        if pipeline is not None:
            return pipeline
        with self._load_lock:  # queries from other threads take only self._lock
            pipeline = self._loaded(ref)
            if pipeline is not None:
                return pipeline
            self.unload(keep=(ref,))
            self._placement = None
            try:
                model = self._load_model(ref)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled here
                if not is_out_of_memory(exc):
                    raise
                self.unload(keep=(ref,), include_resident=True)
                try:
                    model = self._load_model(ref)
                except Exception as exc2:  # noqa: BLE001
                    if is_out_of_memory(exc2):
                        raise OutOfMemoryError(f"Not enough memory to load {ref.label}.") from None
                    raise
            # The budget the load was placed by: asked again now, a CUDA device's free memory
            # would no longer count the model just loaded onto it.
            budget, offloaded = self._placement or (self._flux_budget(), False)
            pipeline = _pipeline_for(model, Pipeline, budget, not offloaded)
            with self._lock:
                self._pipelines[ref] = pipeline
                self.loads.append(ref)
            return pipeline

    def _load_model(self, ref: ModelRef):
        kwargs = dict(device=self.device, dtype=ref.dtype, vae_path=ref.vae_path)
        if ref.prediction_type is not None:
            kwargs["prediction_type"] = ref.prediction_type
        if ref.unet_path is not None:
            kwargs["unet_path"] = ref.unet_path
        try:
            if self._loader is not None:
                return self._loader(ref.path, **kwargs)
            from .flux.info import is_flux_folder

            if is_flux_folder(ref.path):  # FLUX.1 has its own loader and pipeline (inference/flux)
                from .flux.loader import load_flux_folder

                device, dtype = self._flux_placement(ref)
                return self._on_target(load_flux_folder(ref.path, device=device, dtype=dtype))
            from .flux.file_info import is_flux_transformer_file

            if is_flux_transformer_file(ref.path):  # BFL .safetensors / .gguf + ae, clip_l, t5 beside it
                from .flux.single_file import load_flux_single_file

                device, dtype = self._flux_placement(ref)
                return self._on_target(load_flux_single_file(ref.path, ae=ref.vae_path, device=device, dtype=dtype))
            from .loader import load_model

            return load_model(ref.path, **kwargs)
        except InferenceError:
            raise
        except OSError as exc:
            raise ModelFormatError(f"{ref.path}: cannot read the model ({exc.strerror or exc})") from None

    # ------------------------------------------------------------------ FLUX residency
    # (budget, read onto the CPU?) chosen for the FLUX model being loaded; None before a FLUX load.
    _placement: tuple[int | None, bool] | None = None

    @property
    def _offloaded_load(self) -> bool:
        """The last FLUX load went to the CPU (its weight files exceed the budget)."""
        return bool(self._placement and self._placement[1])

    def _flux_budget(self) -> int | None:
        from .flux.residency import default_budget

        return self.vram_budget if self.vram_budget is not None else default_budget(self.device)

    def _flux_placement(self, ref: ModelRef):
        """(load device, dtype) for a FLUX model: the CPU when its weight files exceed the budget
        (a 12B transformer must not be read onto a GPU it does not fit), in the target's dtype."""
        import torch

        from .flux.loader import default_dtype
        from .flux.residency import flux_weight_bytes

        budget = self._flux_budget()
        size = flux_weight_bytes(ref.path, ref.vae_path) if budget is not None else None
        offloaded = size is not None and size > budget
        self._placement = (budget, offloaded)
        dtype = ref.dtype or default_dtype(torch.device(self.device))
        return ("cpu" if offloaded else self.device), dtype

    def _on_target(self, model):
        import torch

        model.device = torch.device(self.device)  # where inputs go; the residency moves the weights
        return model

    # ------------------------------------------------------------------ running
    def generate(self, ref: ModelRef, request: GenerationRequest, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, return_latents: bool = False) -> GenerationResult:
        from .lora.apply import apply_loras, remove_loras

        pipeline = self.load(ref)
        if request.reference_image is not None and getattr(pipeline, "variant", None) != "kontext":
            # Only FLUX Kontext reads a reference image; the SD pipelines would silently ignore it.
            from .errors import InvalidRequestError

            raise InvalidRequestError(f"reference image given, but {ref.label} is not a FLUX Kontext model")
        # Merge the request's LoRAs, or put the base weights back exactly when it has none;
        # switching LoRAs or weights never reloads the model.
        lora_warnings: list[str] = []
        if request.loras:
            lora_warnings = apply_loras(pipeline.model, self._lora_stack(request.loras))
        else:
            remove_loras(pipeline.model)
        for attempt in (1, 2):
            try:
                with guard_decode(pipeline.model.vae, self.decode_tiles):
                    result = pipeline.generate(request, progress=progress, should_stop=should_stop,
                                               return_latents=return_latents)
                if lora_warnings:
                    result.info["lora_warnings"] = list(lora_warnings)
                return result
            except OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                if not is_out_of_memory(exc):
                    raise
                # Like ComfyUI: free the other models and try once more.
                log.warning("out of memory during sampling (attempt %d)", attempt)
                self.unload(keep=(ref,), include_resident=True)
        raise OutOfMemoryError(f"Out of memory generating a {request.width}x{request.height} image with "
                               f"{ref.label}. Try a smaller frame or fewer steps at once.")

    def _lora_stack(self, specs) -> list:
        from .lora.apply import LoraWeight, load_lora

        stack = []
        for spec in specs:
            path = Path(spec.path)
            try:
                stat = path.stat()
            except OSError:
                raise ModelFormatError(f"{path}: no such LoRA file") from None
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                lora = self._loras.get(key)
            if lora is None:
                lora = load_lora(path)
                with self._lock:
                    self._loras[key] = lora
            stack.append(LoraWeight(lora, spec.unet, spec.text))
        return stack

    def preview_image(self, ref: ModelRef, latents):
        """Decode intermediate latents for a progress preview (uint8 RGB), or None."""
        import torch

        from .images import tensor_to_rgb
        from .pipeline import decode_latents

        if latents is None:
            return None
        pipeline = self.load(ref)
        residency = getattr(pipeline, "residency", None)
        if residency is not None and residency.sequential:
            # Mid-render the transformer holds the device: decode where the VAE is now rather than
            # evicting the transformer for a preview.
            latents = latents.to(residency.where("vae"))
        with torch.no_grad():
            return tensor_to_rgb(decode_latents(pipeline.model, latents))


__all__ = ["DEFAULT_TILES", "Engine", "ModelRef", "OutOfMemoryError", "is_out_of_memory", "warm_up_imports"]
