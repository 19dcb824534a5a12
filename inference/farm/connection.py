"""Connecting to the configured Ray cluster, and nothing else (the farm client's security edge).

We connect only to the address given: RAY_ADDRESS and "auto" discovery are ignored, a plain TCP
check with a short timeout comes first, `ray.init` runs under a deadline (a port that accepts but
never answers would otherwise hang for minutes), Ray must not rewrite a loopback address to the
machine's network address, and token authentication is passed through.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import FarmUnavailableError

log = logging.getLogger(__name__)
NAMESPACE = "canvasai-farm"
_ADDRESS_RE = re.compile(r"^(?:(ray)://)?([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


def _first_line(exc: BaseException) -> str:
    """One line for the user; Ray's wrappers hide the reason in their cause, so add its first line."""
    text = str(exc).strip()
    line = text.splitlines()[0][:300] if text else type(exc).__name__
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not None and str(cause).strip():
        line += f" ({type(cause).__name__}: {str(cause).strip().splitlines()[0][:200]})"
    return line


def parse_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of "host:port" or "ray://host:port"; anything else is refused, so an
    empty setting never turns into Ray's "auto" discovery of some other cluster."""
    match = _ADDRESS_RE.match(address.strip()) if isinstance(address, str) else None
    if not match or not 0 < int(match.group(3)) < 65536:
        raise FarmUnavailableError(f"render farm address {str(address)[:80]!r} is not HOST:PORT "
                                   "(e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001)")
    return match.group(1) or "", match.group(2).strip("[]"), int(match.group(3))


def check_reachable(host: str, port: int, timeout_s: float) -> None:
    """A TCP connection to the head within `timeout_s`, or one line saying why not."""
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise FarmUnavailableError(f"render farm at {host}:{port} is unreachable ({reason.lower()} after "
                                   f"{time.monotonic() - started:.1f} s)") from None


@contextmanager
def _connect_environment(timeout_s: float, token: str | None):
    """Ray reads some settings from the environment: drop RAY_ADDRESS (it would override the
    configured address), bound the GCS connection retries, pass the cluster's auth token."""
    saved = {key: os.environ.get(key) for key in ("RAY_ADDRESS", "RAY_gcs_server_port_wait_time_s")}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_gcs_server_port_wait_time_s"] = str(max(1, math.ceil(timeout_s)))
    if token:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = token
        _refresh_ray_auth()
    elif "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN")
                                                or os.environ.get("RAY_AUTH_TOKEN_PATH")
                                                or (Path.home() / ".ray" / "auth_token").is_file()):
        # Ray enables token auth by itself only for a cluster it finds on this machine; a token
        # the user has set up (env or ~/.ray/auth_token) is meant for the configured cluster too.
        os.environ["RAY_AUTH_MODE"] = "token"
        _refresh_ray_auth()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_address_rewrite(host: str) -> None:
    """Ray replaces a loopback address by this machine's network address unless told not to
    before it is imported; we connect only where the user said, so refuse instead."""
    from ray._private import ray_constants

    if _is_loopback(host) and ray_constants.ENABLE_RAY_CLUSTER:
        raise FarmUnavailableError(f"render farm at {host}: Ray would connect through this machine's network "
                                   "address instead; set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before starting "
                                   "the editor to use a head on this machine")


_pending_init: threading.Thread | None = None


def _init_with_deadline(ray, target: str, expected: str, deadline_s: float) -> None:
    """ray.init, bounded in time: a head that accepts TCP but never answers would otherwise keep
    Ray retrying for minutes. A timed-out attempt is left to finish in the background (Ray has
    no way to abort it); the next connect says so instead of racing it."""
    global _pending_init
    if _pending_init is not None and _pending_init.is_alive():
        raise FarmUnavailableError("a previous connection attempt to the render farm is still running; "
                                   "try again in a minute")
    outcome: dict = {}

    def attempt() -> None:
        try:
            ray.init(address=target, namespace=NAMESPACE, logging_level=logging.ERROR, log_to_driver=False,
                     configure_logging=False)
            outcome["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, AuthenticationError…
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, name="farm-connect", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        _pending_init = thread
        raise FarmUnavailableError(f"render farm at {expected} accepted the connection but did not answer "
                                   f"as a Ray head within {deadline_s:.0f} s")
    if "error" in outcome:
        raise FarmUnavailableError(f"render farm at {expected} refused the connection: "
                                   f"{_first_line(outcome['error'])}")
    if target.startswith("ray://"):
        # Ray Client talks only to the gRPC endpoint given (no discovery); the GCS address it then
        # reports is the head's own (another port, maybe another host name), so it is not compared.
        return
    actual = ray.get_runtime_context().gcs_address
    if not _same_address(actual, expected):  # never stay connected anywhere but the configured address
        ray.shutdown()
        raise FarmUnavailableError(f"render farm at {expected}: Ray connected to {actual} instead; disconnected")


def _same_address(actual: str, expected: str) -> bool:
    """Whether Ray's GCS address is the configured one (a host name may have become its IP)."""
    a_host, _, a_port = actual.rpartition(":")
    e_host, _, e_port = expected.rpartition(":")
    if a_port != e_port:
        return False
    if a_host.strip("[]") == e_host:
        return True
    try:
        return a_host.strip("[]") in {info[4][0] for info in socket.getaddrinfo(e_host, int(e_port))}
    except OSError:
        return False


def _refresh_ray_auth() -> None:
    """Ray caches its auth mode and token when imported; re-read them (as `ray start` does)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # noqa: BLE001 - another Ray version: the environment is read at init anyway
        log.debug("could not refresh Ray's auth settings", exc_info=True)
