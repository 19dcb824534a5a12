"""A model folder's ``scheduler/scheduler_config.json``, read the way diffusers reads it.

``SchedulerConfig.from_dict(d)`` keeps the raw dict and validates the keys every sampler reads.
``config.resolved(sampler)`` then gives the values one sampler's diffusers class would see after
``Class.from_config(d)``: keys that class does not declare are dropped, keys it declares but the
dict lacks take *that class's* default (the defaults differ: Euler spaces timesteps "linspace",
DDIM and LCM "leading"; DDIM clips x0 unless told not to; LCM has its own beta range).

A config whose ``_class_name`` is an EDM class (``is_edm``) resolves to EDMEulerScheduler's keys
for euler and EDMDPMSolverMultistepScheduler's for dpmpp_2m_karras (sigma_min/max/data, rho,
sigma_schedule...); other samplers refuse it. TCD reads LCM's keys with LCM's defaults.

Two ``from_config`` details are replicated because they change numbers:

* keys listed in ``_use_default_values`` are treated as absent (diffusers drops them);
* DPM-Solver reads ``sigma_min``/``sigma_max`` with ``hasattr`` although it does not declare
  them, and ``from_config`` keeps every undeclared key of the dict as a hidden config entry, so
  a ``sigma_min`` left in the dict by another class (an Euler config) moves DPM's Karras range.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from inference.errors import InvalidRequestError
from inference.samplers.registry import (
    DIFFUSERS_SPACINGS,
    SPACINGS,  # noqa: F401  (re-exported by inference.samplers)
    check_sampler,
    is_edm_class,
)
from inference.samplers.registry import SAMPLERS as _REGISTRY

SAMPLER_NAMES = tuple(_REGISTRY)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

# Keys and defaults shared by every class we mirror (LCM overrides the beta ones).
_COMMON: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}

# Per sampler: the __init__ keywords of its diffusers class (beyond _COMMON) with their defaults,
# copied from diffusers 0.42.1. Only the keys that affect numbers or that we must reject matter.
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "euler": {  # EulerDiscreteScheduler
        "timestep_spacing": "linspace",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_type": "discrete",
        "final_sigmas_type": "zero",
    },
    "euler_a": {  # EulerAncestralDiscreteScheduler
        "timestep_spacing": "linspace",
    },
    "dpmpp_2m_karras": {  # DPMSolverMultistepScheduler
        "timestep_spacing": "linspace",
        "solver_order": 2,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf,
        "variance_type": None,
    },
    "ddim": {  # DDIMScheduler
        "timestep_spacing": "leading",
        "clip_sample": True,
        "set_alpha_to_one": True,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
    },
    "lcm": {  # LCMScheduler
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "timestep_spacing": "leading",
        "original_inference_steps": 50,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "timestep_scaling": 10.0,
    },
}
# TCDScheduler declares exactly LCMScheduler's keys and defaults (it ignores the clipping ones).
_CLASS_DEFAULTS["tcd"] = dict(_CLASS_DEFAULTS["lcm"])

# EDM classes (Playground v2.5) share none of the beta keys: their own table, per sampler.
_EDM_COMMON: dict[str, Any] = {  # EDMEulerScheduler
    "sigma_min": 0.002,
    "sigma_max": 80.0,
    "sigma_data": 0.5,
    "sigma_schedule": "karras",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "rho": 7.0,
    "final_sigmas_type": "zero",
}
_EDM_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "euler": dict(_EDM_COMMON),
    "dpmpp_2m_karras": {  # EDMDPMSolverMultistepScheduler
        **_EDM_COMMON,
        "solver_order": 2,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
    },
}

# What each sampler name forces on top of the config (the name is the recipe).
_FORCED: dict[str, dict[str, Any]] = {
    "dpmpp_2m_karras": {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
}
_EDM_FORCED: dict[str, dict[str, Any]] = {
    "dpmpp_2m_karras": {"algorithm_type": "dpmsolver++", "solver_order": 2, "sigma_schedule": "karras"},
}

def check_sampler_name(sampler: str) -> None:
    check_sampler(sampler)


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler section of a model folder; ``raw`` is the dict as read (minus dropped keys).

    The typed attributes are the values the non-LCM classes would see (all five classes share
    these defaults except LCM's beta range); use ``resolved(sampler)`` for one class's view.
    """

    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SchedulerConfig:
        if not isinstance(d, Mapping):
            raise InvalidRequestError(f"scheduler config must be a dict, got {type(d).__name__}")
        dropped = set(d.get("_use_default_values") or ())
        raw = {k: v for k, v in d.items() if k not in dropped and k != "_use_default_values"}
        config = cls(raw=MappingProxyType(raw))
        config._validate()
        return config

    def _get(self, key: str) -> Any:
        value = self.raw.get(key)
        return _COMMON[key] if value is None else value

    @property
    def num_train_timesteps(self) -> int:
        return int(self._get("num_train_timesteps"))

    @property
    def beta_start(self) -> float:
        return float(self._get("beta_start"))

    @property
    def beta_end(self) -> float:
        return float(self._get("beta_end"))

    @property
    def beta_schedule(self) -> str:
        return str(self._get("beta_schedule"))

    @property
    def prediction_type(self) -> str:
        return str(self._get("prediction_type"))

    @property
    def steps_offset(self) -> int:
        return int(self._get("steps_offset"))

    @property
    def rescale_betas_zero_snr(self) -> bool:
        return bool(self._get("rescale_betas_zero_snr"))

    @property
    def timestep_spacing(self) -> str | None:
        """The spacing the dict names, or None: then each class uses its own default."""
        return self.raw.get("timestep_spacing")

    @property
    def set_alpha_to_one(self) -> bool | None:
        return self.raw.get("set_alpha_to_one")

    @property
    def class_name(self) -> str | None:
        """The diffusers scheduler class the folder names (``_class_name``), if any."""
        name = self.raw.get("_class_name")
        return name if isinstance(name, str) else None

    @property
    def is_edm(self) -> bool:
        return is_edm_class(self.class_name)

    def _validate(self) -> None:
        n = self._get("num_train_timesteps")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise InvalidRequestError(f"scheduler num_train_timesteps must be an integer >= 2, got {n!r}")
        if self.raw.get("trained_betas") is None and self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidRequestError(f"unsupported scheduler beta_schedule {self.beta_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidRequestError(f"unsupported scheduler prediction_type {self.prediction_type!r}")
        spacing = self.timestep_spacing
        if spacing is not None and spacing not in DIFFUSERS_SPACINGS:
            raise InvalidRequestError(f"unsupported scheduler timestep_spacing {spacing!r}")

    def resolved(self, sampler: str, **overrides: Any) -> dict[str, Any]:
        """Every key ``sampler``'s diffusers class reads, as ``Class.from_config(raw, **overrides)``."""
        check_sampler_name(sampler)
        if self.is_edm:
            return self._resolved_edm(sampler, overrides)
        defaults = {**_COMMON, **_CLASS_DEFAULTS[sampler]}
        out: dict[str, Any] = {}
        for key, default in defaults.items():
            value = self.raw.get(key)
            out[key] = default if value is None else value
        if sampler == "dpmpp_2m_karras":
            # from_config registers every undeclared key of the dict as a "hidden" config entry,
            # and DPM-Solver's Karras conversion reads them with hasattr(self.config, "sigma_min").
            out["sigma_min"] = self.raw.get("sigma_min")
            out["sigma_max"] = self.raw.get("sigma_max")
        out.update(_FORCED.get(sampler, {}))
        out.update({k: v for k, v in overrides.items() if v is not None})
        return out

    def _resolved_edm(self, sampler: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The EDM class's view. Keys it does not declare (timestep_spacing) are dropped, as its
        ``from_config`` drops them."""
        if sampler not in _EDM_CLASS_DEFAULTS:
            takers = ", ".join(f"{s} ({_REGISTRY[s].edm_class})" for s in _EDM_CLASS_DEFAULTS)
            raise InvalidRequestError(
                f"sampler {sampler!r} cannot sample this model's EDM scheduler {self.class_name}; use {takers}"
            )
        out = {key: default if self.raw.get(key) is None else self.raw[key]
               for key, default in _EDM_CLASS_DEFAULTS[sampler].items()}
        out.update(_EDM_FORCED.get(sampler, {}))
        out.update({k: v for k, v in overrides.items() if v is not None and k in out})
        return out


def as_config(config: SchedulerConfig | Mapping[str, Any]) -> SchedulerConfig:
    return config if isinstance(config, SchedulerConfig) else SchedulerConfig.from_dict(config)
