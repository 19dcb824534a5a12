"""The Qt adapter of the AI session: binds :class:`editor.ai.session.AISession`
(the Qt-free state machine: live, final, staging) to the window.

What lives here and nowhere else: Qt signals mirroring the session's, the
input poll timer, the relay that brings worker reports to the UI thread, the
model catalog the pickers show and the engine built from it. Everything runs
on the UI thread; nothing here waits for inference.

Input changes (strokes, selection, layers, frame, prompt) are polled at most
every ``INPUT_POLL_MS`` — like Krita's live mode — which updates the frame's
mode label and, with Live on, schedules a preview; a stroke keeps producing
frames while it is drawn because the poll is a throttle, not a debounce.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from editor.ai import catalog, flux
from editor.ai import loras as lora_list
from editor.ai.frame import GenerationFrame
from editor.ai.request import EditRequest
from editor.ai.session import AISession
from editor.document import Document, Rect
from inference.api import DEFAULT_GUIDANCE, DEFAULT_STEPS, SEED_MAX, default_cache_path

from .relay import CoreRelay

log = logging.getLogger(__name__)

INPUT_POLL_MS = 80  # inputs are read at most this often (12 Hz)

EngineFactory = Callable[[dict, str], object]  # ({id: ModelSpec}, device) -> Engine


def _torch_engine(specs: dict, device: str):
    from editor.ai.engine import TorchEngine

    return TorchEngine(specs, device)


class AIController(QObject):
    frame_changed = Signal()
    mode_changed = Signal(object)  # ModeDecision
    overlay_changed = Signal()  # what is drawn over the canvas changed
    progress_changed = Signal(float, str)  # fraction 0..1 of the final render (-1: idle), text
    progress_preview = Signal(object)  # GeneratedImage of a final render's intermediate step, or None
    message = Signal(str, str)  # text, level: "info", "warning", "error" ("" text: clear)
    busy_changed = Signal(bool)  # a final render runs (or waits for the preview)
    live_changed = Signal(bool)
    live_stats_changed = Signal(object)  # LiveStats
    staging_changed = Signal()
    request_changed = Signal()  # the request changed from here (new seed, model defaults, loaded settings)
    models_changed = Signal()
    loras_changed = Signal()  # LoRAs added, removed or restored (weights and switches: request_changed)

    def __init__(self, session, settings, *, engine=None, device: str = "cpu",
                 engine_factory: Optional[EngineFactory] = None, farm=None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = session  # the window's EditorSession (document, active layer)
        self.settings = settings
        self.device = device
        self._injected_engine = engine  # tests / custom set-ups: used as is, no catalog checks
        self._engine_factory = engine_factory or _torch_engine
        if farm is not None:  # issue 21: final renders and variations on the render farm when it is on
            from editor.ai.farm import farm_engine_factory

            self._engine_factory = farm_engine_factory(farm, self._engine_factory)
        self._built_engine = None
        self.relay = CoreRelay(self)
        self.entries: dict[str, catalog.ModelEntry] = {}
        self.lora_library = lora_list.LoraLibrary()
        self.reload_models()
        final = self.entries.get(settings.final_model)
        rng = random.Random()
        request = EditRequest(
            frame=Rect(0, 0, 8, 8), seed=rng.randint(0, SEED_MAX),
            steps=(final.steps if final and final.steps else DEFAULT_STEPS),
            guidance=(final.guidance if final and final.guidance is not None else DEFAULT_GUIDANCE),
            preview_model=settings.preview_model, final_model=settings.final_model,
        )
        self.ai = AISession(session.document, request, post=self.relay.post, engine_for=self._engine_for,
                            preview_settings=self._preview_settings, partial_denoise=self._partial_denoise,
                            refine_bound=self._refine_bound, fill_model=self.fill_model, rng=rng)
        for name in ("frame_changed", "mode_changed", "overlay_changed", "progress_changed", "progress_preview",
                     "message", "busy_changed", "live_changed", "live_stats_changed", "staging_changed",
                     "request_changed"):
            getattr(self.ai, name).connect(getattr(self, name).emit)
        self.ai.frame_changed.connect(self.inputs_changed)
        if settings.lora_list:  # the list of the last session, files looked up again
            self.ai.update_request(loras=lora_list.decode_loras(settings.lora_list))
            self._restore_loras()
        self._sync_preview_loras()

        self._poll = QTimer(self)
        self._poll.setSingleShot(True)
        self._poll.setInterval(INPUT_POLL_MS)
        self._poll.timeout.connect(self.poll_inputs)
        session.document_changed.connect(self._on_document_changed)
        self._connect_bridge()
        self.poll_inputs()

    def __getattr__(self, name: str):
        # The session's state reads through (c.frame, c.staging, c.live_image...): the adapter has none.
        if name != "ai" and "ai" in self.__dict__:
            return getattr(self.__dict__["ai"], name)
        raise AttributeError(name)

    # ------------------------------------------------------------- document
    @property
    def document(self) -> Document:
        return self.session.document

    def _connect_bridge(self) -> None:
        bridge = self.session.bridge  # replaced with the document: its connections go with it
        bridge.pixels_changed.connect(self.inputs_changed)
        bridge.selection_changed.connect(self.inputs_changed)
        bridge.layers_changed.connect(self.inputs_changed)
        bridge.canvas_resized.connect(self._on_canvas_resized)

    def _on_document_changed(self, document: Document) -> None:
        self._connect_bridge()
        self.ai.set_document(document)

    def _on_canvas_resized(self, _w: int, _h: int, dx: int, dy: int) -> None:
        self.ai.canvas_resized(dx, dy)
        self.inputs_changed()

    # ---------------------------------------------------------------- frame
    def set_frame(self, frame: GenerationFrame) -> None:
        if self.ai.set_frame(frame):
            self.ai.clear_error()

    @staticmethod
    def make_frame(x0: float, y0: float, x1: float, y1: float) -> GenerationFrame:
        """The grid frame spanning two corners dragged out on the canvas."""
        return GenerationFrame.snapped(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))

    # -------------------------------------------------------------- request
    def update_request(self, **changes) -> None:
        """Panel edits (prompt, seed, steps...): take them and re-read the inputs."""
        if self.ai.update_request(**changes):
            self.inputs_changed()

    def randomize_seed(self) -> int:
        seed = self.ai.randomize_seed()
        self.inputs_changed()
        return seed

    # --------------------------------------------------------------- models
    def reload_models(self) -> None:
        known = {k: e for k, e in self.entries.items() if e.description}  # inspected ones keep their facts
        # The LoRAs of the model folders (cached scan): the LoRA picker and the speed-LoRA previews.
        self.lora_library = lora_list.LoraLibrary.scan(self.settings.model_folders, default_cache_path())
        found = catalog.catalog(self.settings, self.lora_library)
        self.entries = {entry.id: known.get(entry.id, entry) for entry in found}
        self.models_changed.emit()

    def entry(self, model_id: str) -> catalog.ModelEntry:
        fresh = catalog.resolve(model_id)  # the house model may have been installed meanwhile
        old = self.entries.get(model_id)
        if old is not None and old.description and not fresh.problem:
            return old
        self.entries[model_id] = fresh
        return fresh

    def _known(self, model_id: str) -> catalog.ModelEntry:
        """The entry already resolved for ``model_id``, else a fresh one (no file read twice)."""
        return self.entries.get(model_id) or self.entry(model_id)

    def _preview_settings(self, model_id: str) -> tuple[Optional[int], Optional[float]]:
        entry = self._known(model_id)
        return entry.steps or catalog.DEFAULT_PREVIEW_STEPS, entry.guidance

    def fill_model(self, final_id: str) -> Optional[str]:
        """The FLUX Fill model of the library (the catalog's scan) that repaints a FLUX final's masks."""
        return flux.fill_model(list(self.entries.values()), final_id, self.lora_library.library.entries)

    def guidance_control(self) -> flux.GuidanceControl:
        """Label, tooltip and state of the panel's guidance control for the final model."""
        return flux.guidance_control(flux.family_of(self.ai.request.final_model))

    def _partial_denoise(self, model_id: str) -> bool:
        return self._known(model_id).partial_denoise

    def _refine_bound(self, model_id: str) -> Optional[float]:
        return self._known(model_id).refine_bound

    def set_models(self, preview: Optional[str] = None, final: Optional[str] = None) -> None:
        """Choose the preview and/or final model (ids as in the settings, which keep them).
        A user file is inspected first (as "Add model…" does); one that cannot run is refused."""
        for model_id in filter(None, (preview, final)):
            if not self._inspect(model_id):
                self.models_changed.emit()  # the pickers go back to the current choice
                return
        request = self.ai.request
        changes = {}
        if preview is not None and preview != request.preview_model:
            self.settings.preview_model = preview
            changes["preview_model"] = preview
        if final is not None and final != request.final_model:
            self.settings.final_model = final
            changes["final_model"] = final
            entry = self.entry(final)
            if entry.steps:  # the model's recommended settings (house.json, its preset)
                changes["steps"] = entry.steps
            if entry.guidance is not None:
                changes["guidance"] = entry.guidance
        if not changes:
            return
        if "final_model" in changes:
            self._follow_final(preview, changes)
        known = set(self.entries)
        problems = [self.entry(m).problem for m in (preview, final) if m is not None]
        if set(self.entries) != known:
            self.models_changed.emit()
        self.ai.update_request(**changes)
        self.request_changed.emit()
        self._sync_preview_loras()
        if "preview_model" in changes:
            self.ai.preview_model_changed()
        if self._injected_engine is None:
            for problem in filter(None, problems):
                self.ai.say(problem, "warning")
        self.inputs_changed()

    def add_model(self, path: str, role: str = "final") -> Optional[catalog.ModelEntry]:
        """"Add model…": inspect the file or folder now (family, kind, size) and
        pick it, or refuse it with the reason — never keep a file that cannot run."""
        try:
            facts = catalog.inspect_model_file(path)
            if facts.kind == "unet" and not catalog.is_flux_without_companions(facts):
                # A UNet-only file (Lightning, Hyper-SD, DMD2) runs on the current final model's
                # VAE and text encoders.
                base_id = self.ai.request.final_model if "ai" in self.__dict__ else self.settings.final_model
                entry = catalog.inspected_unet_entry(path, base_id)
            else:
                entry = catalog.inspected_entry(path)
        except catalog.ModelRefused as exc:
            self.ai.say(f"Not added: {exc}", "warning")
            return None
        self.entries[entry.id] = entry
        self.models_changed.emit()
        self.set_models(**{role: entry.id})
        self.ai.say(f"Added “{entry.label}”: {entry.description}", "info")
        self._warm_native_resolution(entry.id)
        return entry

    def _inspect(self, model_id: str) -> bool:
        """Inspect a user model not inspected yet; False (and the reason said) if it cannot run."""
        known = self.entries.get(model_id)
        if model_id in catalog.HOUSE_FOLDERS or (known is not None and known.description):
            return True
        try:
            self.entries[model_id] = catalog.inspected_entry(model_id)
        except catalog.ModelRefused as exc:
            self.ai.say(f"Cannot use that model: {exc}", "warning")
            return False
        return True

    def _warm_native_resolution(self, model_id: str) -> None:
        """Read a user model's native size off the UI thread (its headers), so planning never stalls on it."""
        engine = self.ai.engine
        if engine is None or self.entry(model_id).native_resolution:
            return
        threading.Thread(target=lambda: _quiet(engine.native_resolution, model_id),
                         name="canvasai-model-header", daemon=True).start()

    # --------------------------------------------------------------- engine
    def _engine_for(self, model_ids: tuple[str, ...]) -> tuple[object, str]:
        """The engine that runs ``model_ids`` (built on first use), or why not."""
        if self._injected_engine is not None:
            return self._injected_engine, ""
        for model_id in model_ids:
            entry = self.entry(model_id)
            if not entry.available:
                return None, entry.problem
        request = self.ai.request if "ai" in self.__dict__ else None
        preview_id = request.preview_model if request else self.settings.preview_model
        final_id = request.final_model if request else self.settings.final_model
        # A speed-LoRA preview runs on its base model's entry: one checkpoint in memory, kept resident.
        ids = [catalog.engine_model_id(i) for i in (preview_id, final_id, *model_ids)]
        wanted = [self.entry(i) for i in dict.fromkeys(ids)]
        specs = catalog.engine_specs(wanted, resident=[catalog.engine_model_id(preview_id)])
        if self._built_engine is None:
            self._built_engine = self._engine_factory(specs, self.device)
        else:
            _give_models(self._built_engine, specs)
        return self._built_engine, ""

    def use_engine(self, engine) -> None:
        """Run on ``engine`` from now on (tests, custom set-ups): no catalog checks."""
        self.ai.stop_work()
        self.ai.set_live(False)
        self.ai.close_service()
        self._injected_engine = engine

    def engine_has_loaded(self, model_id: str) -> bool:
        loaded = getattr(self.ai.engine, "loaded", None)
        return True if loaded is None else model_id in loaded()

    # ----------------------------------------------------------------- input
    def inputs_changed(self, *_args) -> None:
        """Something the generation reads changed: poll soon (a throttle, so a
        long stroke still polls every ``INPUT_POLL_MS``)."""
        if not self._poll.isActive():
            self._poll.start()

    def poll_inputs(self) -> None:
        self._poll.stop()
        self.ai.poll()

    # ----------------------------------------------------------- user verbs
    def set_live(self, enabled: bool, *, probe: bool = False) -> bool:
        self.ai.clear_error()
        return self.ai.set_live(enabled, probe=probe)

    def set_live_opacity(self, opacity: float) -> None:
        self.ai.set_live_opacity(opacity)

    def generate(self):
        return self.ai.generate()

    def cancel(self) -> bool:
        return self.ai.cancel()

    def accept(self):
        layer = self.ai.accept()
        if layer is not None:
            self.session.set_active(layer)
        return layer

    def discard(self) -> None:
        self.ai.discard()

    def load_layer_settings(self, layer) -> bool:
        """"Use these settings": the prompt, seed, steps…, LoRAs and frame of a generated layer."""
        try:
            self.ai.load_settings(layer.attributes)
        except (ValueError, KeyError) as exc:
            self.ai.say(f"“{layer.name}” holds no usable generation settings ({exc})", "warning")
            return False
        self._restore_loras()
        self.inputs_changed()
        return True

    def regenerate_layer(self, layer, *, vary: bool = False):
        """Regenerate (same seed) or Vary (a new seed) the generation that made ``layer``."""
        try:
            self.ai.load_settings(layer.attributes, new_seed=vary)
        except (ValueError, KeyError) as exc:
            self.ai.say(f"“{layer.name}” holds no usable generation settings ({exc})", "warning")
            return None
        self._restore_loras()
        return self.ai.regenerate(layer.attributes.get("mode"))

    # ---------------------------------------------------------------- LoRAs
    def lora_choices(self) -> list:
        """The library's LoRAs for the final model's family (all when its family is unknown)."""
        return self.lora_library.loras(catalog.model_family(self.ai.request.final_model))

    def lora_trigger_words(self, path: str) -> list[str]:
        return self.lora_library.trigger_words(path)

    def add_lora(self, path: str) -> None:
        self._set_loras(lora_list.add_item(self.ai.request.loras, self.lora_library.item(path)), listed=True)

    def set_lora(self, index: int, *, weight: Optional[float] = None, enabled: Optional[bool] = None) -> None:
        self._set_loras(lora_list.change_item(self.ai.request.loras, index, weight=weight, enabled=enabled))

    def remove_lora(self, index: int) -> None:
        self._set_loras(lora_list.remove_item(self.ai.request.loras, index), listed=True)

    def _set_loras(self, items: tuple, *, listed: bool = False) -> None:
        self.ai.update_request(loras=items)
        self.settings.lora_list = lora_list.encode_list(items)  # saved with the window's settings
        self._sync_preview_loras()
        if listed:
            self.loras_changed.emit()
        self.inputs_changed()

    def _restore_loras(self) -> None:
        """After loading a layer's settings: its LoRAs as files found now; a missing one is named."""
        items, missing = lora_list.restore_loras(self.ai.request.loras, self.lora_library)
        self.ai.update_request(loras=items)
        self.settings.lora_list = lora_list.encode_list(items)
        self._sync_preview_loras()
        self.loras_changed.emit()
        if missing:
            self.ai.say(lora_list.missing_notice(missing), "warning")

    def _sync_preview_loras(self) -> None:
        """What Live adds to its model (editor.ai.loras.preview_recipe), after a LoRA or model change."""
        request = self.ai.request
        speed = self.entry(request.preview_model)
        family = catalog.model_family(request.final_model)
        same = bool(family) and catalog.model_family(request.preview_model) == family
        recipe = lora_list.preview_recipe(request.loras, same_family=same,
                                          speed_lora=str(speed.speed_lora) if speed.speed_lora else None,
                                          sampler=speed.sampler, spacing=speed.spacing)
        self.ai.update_request(preview_loras=recipe.loras, preview_sampler=recipe.sampler,
                               preview_spacing=recipe.spacing)

    def _follow_final(self, preview: Optional[str], changes: dict) -> None:
        """A new final model: re-read the speed-LoRA offers (they are per family) and move a
        "FINAL + speed LoRA" preview onto the new final when one fits it."""
        self.reload_models()
        current = changes.get("preview_model", self.ai.request.preview_model)
        if preview is None and catalog.split_speed_id(current)[0]:
            final_id = catalog.engine_model_id(changes["final_model"])
            offers = [e.id for e in self.entries.values()
                      if e.speed_lora is not None and catalog.split_speed_id(e.id)[1] == final_id]
            if offers and current not in offers:
                self.settings.preview_model = changes["preview_model"] = offers[0]

    # the relay's target for a live frame (kept for tests that replay a queued frame)
    def _on_live_frame(self, frame) -> None:
        self.ai.on_live_frame(frame)

    # -------------------------------------------------------------- shut down
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancelled jobs end within one step)."""
        self._poll.stop()
        self.relay.close()
        self.ai.close_service(timeout)


def _give_models(engine, specs: dict) -> None:
    """Tell a built engine about the models chosen since (the preview one resident).
    Uses ``engine.set_models`` when the engine has it; the older TorchEngine only
    has its ``models`` table, whose ids are only ever added (loaded pipelines keep theirs)."""
    setter = getattr(engine, "set_models", None)
    if setter is not None:
        setter(specs)
        return
    import dataclasses

    table = engine.models
    for model_id, spec in specs.items():
        table[model_id] = spec
    resident = {m for m, s in specs.items() if s.resident}
    for model_id, spec in list(table.items()):
        if spec.resident != (model_id in resident):
            table[model_id] = dataclasses.replace(spec, resident=model_id in resident)


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the real load reports the problem
        log.debug("reading model header failed", exc_info=True)
