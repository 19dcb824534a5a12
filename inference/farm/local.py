"""`python -m inference farm start-local`: a one-machine Ray head for trying the render farm.

The head is `ray start --head --block` bound to 127.0.0.1, started in its own session with its own
temp folder and a fresh auth token (a file only this user can read). Stopping it means signalling
*that* process (with `--block`, Ray stops every process it started) and, if it does not go, killing
its session — never `ray stop`, which would stop every Ray process of this user, other heads too.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field

from .errors import FarmUnavailableError

HOST = "127.0.0.1"
DEFAULT_PORT = 6379
WORKER_PORTS = (10002, 19999)  # Ray's default range for worker processes: the head's port must be outside
# Ray swaps a loopback address for the machine's network address unless told not to (and then
# listens there too); usage stats would contact the internet; PASSIVE keeps idle OpenMP threads
# from spinning on the cores the workers render with.
HEAD_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE",
            "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise FarmUnavailableError(f"--port {port}: expected 1 to 65535")
    if WORKER_PORTS[0] <= port <= WORKER_PORTS[1]:
        raise FarmUnavailableError(f"--port {port}: Ray keeps {WORKER_PORTS[0]}-{WORKER_PORTS[1]} for its worker "
                                   "processes; choose another (e.g. 6379)")
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise FarmUnavailableError(f"port {port} on {HOST} is in use; choose another with --port") from None


@dataclass
class LocalHead:
    """A running local head: `address`, `token_path`, and `stop()` (idempotent)."""

    port: int
    workers: int
    temp: str
    token: str
    token_path: str
    process: subprocess.Popen
    log: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # --block: Ray stops every process it started
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything of this head's session still running (a stuck raylet…): ours only
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        if self.process.poll() is None:
            self.process.wait(10)
        shutil.rmtree(self.temp, ignore_errors=True)


def start_head(workers: int, port: int = DEFAULT_PORT, timeout_s: float = 120.0,
               object_store_bytes: int = 300_000_000) -> LocalHead:
    """Start the head with `workers` CPU slots (one farm worker of one CPU each) and wait until it
    answers; FarmUnavailableError with one line otherwise (and nothing left running)."""
    if workers < 1 or workers > 256:
        raise FarmUnavailableError(f"--workers {workers}: expected 1 to 256")
    try:
        import ray  # noqa: F401 - only to say clearly that it is missing
    except ImportError:
        raise FarmUnavailableError("the render farm needs Ray: install the farm extra "
                                   "(pip install -e '.[farm]')") from None
    _check_port(port)
    temp = tempfile.mkdtemp(prefix="rf-")  # short: Ray's socket paths are length-limited
    token = secrets.token_hex(32)
    token_path = os.path.join(temp, "auth_token")
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    env = {**os.environ, **HEAD_ENV, "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    # Workers inherit this environment: models shipped to them are cached in the head's temp
    # folder (removed on stop), not in the user's ~/.cache.
    env["XDG_CACHE_HOME"] = os.path.join(temp, "cache")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
               f"--node-ip-address={HOST}", f"--num-cpus={workers}", "--num-gpus=0", "--include-dashboard=false",
               f"--dashboard-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
               "--disable-usage-stats", f"--temp-dir={temp}", f"--object-store-memory={object_store_bytes}",
               "--block"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               stdin=subprocess.DEVNULL, start_new_session=True)  # Ctrl-C reaches us, not Ray
    head = LocalHead(port, workers, temp, token, token_path, process)
    ready, up = threading.Event(), threading.Event()

    def read() -> None:
        for line in process.stdout:
            head.log.append(line.rstrip())
            if "block forever" in line:
                up.set()
                ready.set()
        ready.set()  # the process ended: report it

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout_s) or not up.is_set() or process.poll() is not None:
        head.stop()
        tail = next((line for line in reversed(head.log) if "Error" in line),  # Ray's reason, not its traceback
                    next((line for line in reversed(head.log) if line.strip()), "no output"))
        why = "did not start" if up.is_set() or process.poll() is not None else f"did not start within {timeout_s:.0f} s"
        raise FarmUnavailableError(f"the local Ray head {why}: {tail[:200]}")
    return head


def serve(workers: int, port: int = DEFAULT_PORT, out=sys.stdout) -> int:
    """Start the head, say how to use and stop it, wait for Ctrl-C (or the head ending), stop it."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    head = None
    try:
        head = start_head(workers, port)
        print(f"Render farm head at {head.address} ({workers} CPU slot{'s' * (workers != 1)}, this machine only)\n"
              f"  use it from another terminal (the token file lets only you in):\n"
              f"    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_TOKEN_PATH={head.token_path}\n"
              f"    python -m inference generate --prompt '…' --out out.png --farm {head.address}\n"
              f"    python -m inference batch prompts.txt --out renders/ --farm {head.address}\n"
              f"  stop it: Ctrl-C here (its processes and {head.temp} are removed)", file=out, flush=True)
        while not stop.is_set() and head.alive():
            stop.wait(0.5)
        if not stop.is_set():
            print("the local Ray head stopped by itself", file=sys.stderr)
            return 1
        return 0
    finally:
        if head is not None:
            head.stop()
            print("stopped", file=out, flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
