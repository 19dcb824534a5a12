"""Farm jobs, progress reports and results, and their wire form (torch-free, Ray-free).

A job crosses the network as a plain dict of str/int/float/bool/None and numpy arrays (Ray moves
arrays without copies). Everything that arrives is checked here before use — field names, exact
types, array dtypes and shapes, sizes — and a request is then checked by `api.validate_request`,
so a malformed or hostile payload becomes one `FarmPayloadError` line, never a crash deep in
the engine. Object arrays, lists in place of arrays, unknown fields and booleans posing as
numbers are all refused.
"""
from __future__ import annotations

import dataclasses
import math
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..api import MAX_SIDE, GenerationRequest, LoraSpec, validate_request
from ..errors import InvalidRequestError
from .errors import FarmPayloadError

WIRE_VERSION = 3  # 2: a job carries its VAE and UNet files and the client's torch thread count; 3: structure_bound
MAX_TEXT = 20_000  # prompts far beyond CLIP's 75-token chunks are still fine; megabytes are not
MAX_INFO_ITEMS = 64
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
JOB_ID_RE = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")
MAX_THREADS = 1024  # torch threads a job may ask for (far above any CPU's core count)

# What a worker holds in memory for a job: (load id, LoRA content hashes in request order; empty
# without LoRAs). LoRA weights are merged per request, so only the load id costs a load. The load id
# is the model's content SHA-256, joined with "+vae=HASH" / "+unet=HASH" when the job brings a
# separate VAE or UNet file: base+vaeA and base+vaeB are different models in memory.
ModelKey = tuple[str, tuple[str, ...]]


def load_id(model: str, vae: str | None = None, unet: str | None = None) -> str:
    """The identity of what a worker loads for a model and its optional VAE / UNet files."""
    return model + (f"+vae={vae}" if vae else "") + (f"+unet={unet}" if unet else "")


def load_id_files(ident: str) -> tuple[str, ...]:
    """The content hashes a load id is made of (the model's first)."""
    model, *extras = ident.split("+")
    return (model, *(extra.partition("=")[2] for extra in extras))


@dataclass(frozen=True)
class ModelSpec:
    """Which model a job needs: its content hash (the identity on every machine) and hints."""

    content_hash: str  # SHA-256 hex of the file, or of a folder's manifest (see farm.models)
    name: str  # for messages only
    path: str = ""  # the client's path; used by a worker only if it sees the same file there
    dtype: str | None = None
    prediction_type: str | None = None

    @classmethod
    def for_path(cls, path: str, *, dtype: str | None = None, prediction_type: str | None = None) -> ModelSpec:
        """The spec of a local model file or folder (hashes it; cached by path, size and mtime)."""
        from pathlib import Path

        from .models import content_hash

        return cls(content_hash(path), Path(path).name, str(path), dtype, prediction_type)


@dataclass
class FarmJob:
    request: GenerationRequest
    model: ModelSpec
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    preview_every_s: float | None = 1.0  # None: no intermediate previews; 0: after every step
    # The request's LoRA files by content. None on the client: hashed from `request.loras` paths
    # when first needed. On a worker the request's LoraSpec paths *are* these hashes.
    lora_models: tuple[ModelSpec, ...] | None = None
    vae: ModelSpec | None = None  # a separate VAE file or folder (ModelRef.vae_path), shipped like the model
    unet: ModelSpec | None = None  # a UNet-only file or folder (ModelRef.unet_path), shipped like the model
    # The client's torch thread count; the worker renders this job with as many (None: its own).
    # Sums split over a different number of threads round differently (±1 in a few pixels), so
    # "same seed, same pixels as here" needs the same count, even above the worker's CPU share.
    threads: int | None = None

    def files(self) -> tuple[ModelSpec, ...]:
        """Every file the job needs on its worker: model, VAE, UNet, LoRAs (what gets shipped)."""
        return (self.model, *(spec for spec in (self.vae, self.unet) if spec is not None), *self.loras())

    def loras(self) -> tuple[ModelSpec, ...]:
        if self.lora_models is None:
            paths = dict.fromkeys(str(spec.path) for spec in self.request.loras)
            self.lora_models = tuple(ModelSpec.for_path(path) for path in paths)
        return self.lora_models

    def lora_hash(self, spec: LoraSpec) -> str:
        """The content hash of one of the request's LoRAs."""
        for model in self.loras():
            if str(spec.path) in (model.path, model.content_hash):
                return model.content_hash
        raise FarmPayloadError(f"farm payload: LoRA {str(spec.path)[:80]!r} is not among the job's LoRA files")

    @property
    def load_id(self) -> str:
        return load_id(self.model.content_hash, self.vae.content_hash if self.vae else None,
                       self.unet.content_hash if self.unet else None)

    @property
    def key(self) -> ModelKey:
        """(load id, LoRA hashes in order): what a worker holds in memory for this job."""
        return (self.load_id, tuple(self.lora_hash(spec) for spec in self.request.loras))


@dataclass
class Progress:
    job_id: str
    step: int
    total: int
    worker: str
    preview: np.ndarray | None = None  # uint8 (H, W, 3), the newest one only


@dataclass
class Notice:
    """One line for the user: a retry on another worker, a fall-back to local rendering."""

    job_id: str
    message: str


@dataclass
class FarmResult:
    job_id: str
    image: np.ndarray  # uint8 (H, W, 3)
    seed: int
    worker: str
    info: dict = field(default_factory=dict)  # engine info + prompt/seed/model/worker/timings


# ----------------------------------------------------------------------------- checks
def _fail(what: str, problem: str) -> FarmPayloadError:
    return FarmPayloadError(f"farm payload: {what} {problem}")


def _int(value: object, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise _fail(what, f"must be a whole number, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise _fail(what, f"{int(value)} is out of range [{lo}, {hi}]")
    return int(value)


def _float(value: object, what: str) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise _fail(what, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise _fail(what, "must be finite")
    return float(value)


def _str(value: object, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise _fail(what, f"must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise _fail(what, f"is {len(value)} characters long (at most {limit})")
    return value


def _opt_str(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what, 200)


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(what, f"must be true or false, got {type(value).__name__}")
    return bool(value)


def _array(value: object, what: str, kinds: str, ndim: int, channels: int | None = None) -> np.ndarray:
    """A real ndarray of the given dtype kind(s) ('u' uint8, 'f' float32/64) and rank, bounded in size."""
    if not isinstance(value, np.ndarray):
        raise _fail(what, f"must be a numpy array, got {type(value).__name__}")
    allowed = {"u": (np.dtype(np.uint8),), "f": (np.dtype(np.float32), np.dtype(np.float64))}[kinds]
    if value.dtype not in allowed:
        raise _fail(what, f"has dtype {value.dtype} (expected {' or '.join(str(d) for d in allowed)})")
    if value.ndim != ndim or any(side < 1 or side > MAX_SIDE for side in value.shape[:2]) \
            or (channels is not None and value.shape[2] != channels):
        raise _fail(what, f"has shape {value.shape}")
    return np.ascontiguousarray(value)


def _latents(value: object) -> np.ndarray:
    """Init latents (C, H/8, W/8): a float array of at most 64 channels, every side in bounds."""
    if not isinstance(value, np.ndarray) or value.ndim != 3 or not 1 <= value.shape[0] <= 64 \
            or any(side < 1 or side > MAX_SIDE // 8 for side in value.shape[1:]):
        raise _fail("init latents", f"has shape {getattr(value, 'shape', type(value).__name__)}")
    if value.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise _fail("init latents", f"has dtype {value.dtype} (expected float32 or float64)")
    return np.ascontiguousarray(value)


def _exact_keys(obj: object, what: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise _fail(what, f"must be a mapping, got {type(obj).__name__}")
    keys = set(obj)
    if not all(isinstance(key, str) for key in keys):
        raise _fail(what, "has non-text keys")
    unknown = keys - required - set(optional)
    missing = required - keys
    if unknown:
        raise _fail(what, f"has unknown fields {sorted(unknown)[:5]}")
    if missing:
        raise _fail(what, f"lacks fields {sorted(missing)[:5]}")
    return obj


# One reader per GenerationRequest field. A field added to the request without a line here makes
# `request_to_dict` refuse (a test checks the table covers the dataclass), so nothing is silently
# dropped on the way to a worker.
_REQUEST_FIELDS = {
    "prompt": lambda v: _str(v, "prompt"),
    "negative_prompt": lambda v: _str(v, "negative prompt"),
    "seed": lambda v: _int(v, "seed"),
    "steps": lambda v: _int(v, "steps"),
    "sampler": lambda v: _str(v, "sampler", 64),
    "timestep_spacing": lambda v: _opt_str(v, "timestep spacing"),
    "guidance": lambda v: _float(v, "guidance"),
    "width": lambda v: _int(v, "width"),
    "height": lambda v: _int(v, "height"),
    "init_image": lambda v: None if v is None else _array(v, "init image", "u", 3, 3),
    "strength": lambda v: _float(v, "strength"),
    "mask": lambda v: None if v is None else _array(v, "mask", "u", 2),
    "paste_back": lambda v: _bool(v, "paste back"),
    "paste_feather": lambda v: _int(v, "paste feather", 0, 256),
    "change_map": lambda v: None if v is None else _array(v, "change map", "f", 2),
    "image_guidance": lambda v: _float(v, "image guidance"),
    "guidance_rescale": lambda v: _float(v, "guidance rescale"),
    "tcd_gamma": lambda v: _float(v, "TCD gamma"),
    "loras": lambda v: _loras(v),
    "structure_scale": lambda v: _int(v, "structure scale", 0, 64),
    "structure_hold": lambda v: _float(v, "structure hold"),
    "structure_bound": lambda v: _float(v, "structure bound"),
    "reference_image": lambda v: None if v is None else _array(v, "reference image", "u", 3, 3),
    "init_latents": lambda v: None if v is None else _latents(v),
}
MAX_LORAS = 32


def _loras(value: object) -> tuple[LoraSpec, ...]:
    """LoRAs travel by content hash (the files themselves are shipped like models); on arrival a
    LoraSpec's path is that hash, which the worker swaps for its verified local copy."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LORAS:
        raise _fail("LoRA list", f"must be a list of at most {MAX_LORAS}, got {type(value).__name__}")
    out = []
    for item in value:
        data = _exact_keys(item, "LoRA entry", {"hash", "unet", "text"})
        digest = _str(data["hash"], "LoRA hash", 64)
        if not HASH_RE.match(digest):
            raise _fail("LoRA hash", "must be 64 lowercase hex digits (SHA-256)")
        text = None if data["text"] is None else _float(data["text"], "LoRA text weight")
        out.append(LoraSpec(digest, _float(data["unet"], "LoRA weight"), text))
    return tuple(out)


def request_to_dict(request: GenerationRequest, lora_hash=None) -> dict:
    """The request as plain values and arrays; `lora_hash(spec)` names each LoRA by content."""
    names = [f.name for f in dataclasses.fields(GenerationRequest)]
    unknown = [name for name in names if name not in _REQUEST_FIELDS]
    if unknown:  # a new request field the farm would not carry: refuse rather than drop it
        raise FarmPayloadError(f"farm payload: request fields {unknown} are not supported by the farm yet")
    out = {}
    for name in names:
        value = getattr(request, name)
        if name == "mask" and value is not None:
            from ..api import as_mask_array

            value = as_mask_array(value)  # bool or (H, W, C) masks travel as uint8 (H, W)
        if name in ("init_image", "reference_image") and value is not None:
            from ..api import as_rgb_array

            value = np.ascontiguousarray(as_rgb_array(value))
        if name == "loras":
            if value and lora_hash is None:
                raise FarmPayloadError("farm payload: a request with LoRAs travels only inside a FarmJob")
            value = [{"hash": lora_hash(spec), "unet": spec.unet, "text": spec.text} for spec in value]
        out[name] = value
    return out


def request_from_dict(obj: object) -> GenerationRequest:
    data = _exact_keys(obj, "request", set(_REQUEST_FIELDS))
    values = {name: reader(data[name]) for name, reader in _REQUEST_FIELDS.items()}
    request = GenerationRequest(**values)
    try:
        validate_request(request)
    except InvalidRequestError as exc:
        raise FarmPayloadError(f"farm payload: {exc}") from None
    return request


def model_to_dict(spec: ModelSpec) -> dict:
    return {"content_hash": spec.content_hash, "name": spec.name, "path": spec.path, "dtype": spec.dtype,
            "prediction_type": spec.prediction_type}


def model_from_dict(obj: object, what: str = "model") -> ModelSpec:
    """A model, VAE, UNet or LoRA file named by content hash. `path` is only the client's path,
    used by a worker solely when it sees that very file in its shared library *and* it hashes
    the same; the hash is the identity, so a path in its place is refused."""
    data = _exact_keys(obj, what, {"content_hash", "name", "path", "dtype", "prediction_type"})
    digest = _str(data["content_hash"], f"{what} hash", 64)
    if not HASH_RE.match(digest):
        raise _fail(f"{what} hash", "must be 64 lowercase hex digits (SHA-256)")
    return ModelSpec(digest, _str(data["name"], f"{what} name", 255), _str(data["path"], f"{what} path", 4096),
                     _opt_str(data["dtype"], "dtype"), _opt_str(data["prediction_type"], "prediction type"))


def _opt_model(obj: object, what: str) -> ModelSpec | None:
    return None if obj is None else model_from_dict(obj, what)


def job_to_dict(job: FarmJob) -> dict:
    return {"version": WIRE_VERSION, "job_id": job.job_id, "model": model_to_dict(job.model),
            "vae": model_to_dict(job.vae) if job.vae else None, "unet": model_to_dict(job.unet) if job.unet else None,
            "loras": [model_to_dict(spec) for spec in job.loras()],
            "request": request_to_dict(job.request, job.lora_hash), "preview_every_s": job.preview_every_s,
            "threads": job.threads}


def job_from_dict(obj: object) -> FarmJob:
    """The job in a payload, or FarmPayloadError naming the first bad field."""
    data = _exact_keys(obj, "job", {"version", "job_id", "model", "vae", "unet", "loras", "request",
                                    "preview_every_s", "threads"})
    if _int(data["version"], "wire version") != WIRE_VERSION:
        raise _fail("wire version", f"{data['version']} is not {WIRE_VERSION} (update the editor or the worker)")
    job_id = _str(data["job_id"], "job id", 64)
    if not JOB_ID_RE.match(job_id):
        raise _fail("job id", "must be 1-64 letters, digits, '-' or '_'")
    preview = data["preview_every_s"]
    preview = None if preview is None else _float(preview, "preview interval")
    if preview is not None and not 0.0 <= preview <= 3600.0:
        raise _fail("preview interval", f"{preview} must be between 0 and 3600 s")
    if not isinstance(data["loras"], list) or len(data["loras"]) > MAX_LORAS:
        raise _fail("LoRA files", f"must be a list of at most {MAX_LORAS}")
    lora_models = tuple(model_from_dict(item, "LoRA") for item in data["loras"])
    threads = None if data["threads"] is None else _int(data["threads"], "torch threads", 1, MAX_THREADS)
    request = request_from_dict(data["request"])
    wanted = {spec.path for spec in request.loras}
    if wanted != {model.content_hash for model in lora_models}:  # nothing missing, nothing extra shipped
        raise _fail("LoRA files", "do not match the request's LoRAs")
    return FarmJob(request, model_from_dict(data["model"]), job_id, preview, lora_models,
                   _opt_model(data["vae"], "VAE"), _opt_model(data["unet"], "UNet"), threads)


# ----------------------------------------------------------------------------- results and progress
def _info_value(value: object, what: str) -> object:
    if value is None or isinstance(value, (bool, str)):
        return _str(value, what) if isinstance(value, str) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) <= 16:
        return [_info_value(item, what) for item in value]
    raise _fail(what, f"has a value of type {type(value).__name__}")


def clean_info(info: object) -> dict:
    """Result metadata reduced to JSON-like scalars (it ends up in .ora layer attributes)."""
    if not isinstance(info, dict) or len(info) > MAX_INFO_ITEMS:
        raise _fail("result info", "must be a small mapping")
    out = {}
    for key, value in info.items():
        if not isinstance(key, str) or len(key) > 64:
            raise _fail("result info", "has a bad key")
        out[key] = _info_value(value, f"result info {key!r}")
    return out


def result_to_dict(result: FarmResult) -> dict:
    return {"job_id": result.job_id, "image": result.image, "seed": result.seed, "worker": result.worker,
            "info": clean_info(result.info)}


def result_from_dict(obj: object, job: FarmJob) -> FarmResult:
    """A worker's result for `job`: an image of the requested size, the requested seed, clean info."""
    data = _exact_keys(obj, "result", {"job_id", "image", "seed", "worker", "info"})
    if data["job_id"] != job.job_id:
        raise _fail("result", f"is for job {str(data['job_id'])[:64]!r}, not {job.job_id!r}")
    image = _array(data["image"], "result image", "u", 3, 3)
    if image.shape[:2] != (job.request.height, job.request.width):
        raise _fail("result image", f"is {image.shape[1]}x{image.shape[0]}, the job asked for "
                                    f"{job.request.width}x{job.request.height}")
    seed = _int(data["seed"], "result seed")
    if seed != job.request.seed:
        raise _fail("result seed", f"{seed} is not the job's seed {job.request.seed}")
    return FarmResult(job.job_id, image, seed, _str(data["worker"], "worker name", 200), clean_info(data["info"]))


def progress_from_dict(obj: object, job: FarmJob, worker: str) -> Progress:
    data = _exact_keys(obj, "progress", {"step", "total"}, {"preview"})
    total = _int(data["total"], "progress total", 0, 100_000)
    step = _int(data["step"], "progress step", 0, total)
    preview = data.get("preview")
    if preview is not None:
        preview = _array(preview, "preview", "u", 3, 3)
    return Progress(job.job_id, step, total, worker, preview)
