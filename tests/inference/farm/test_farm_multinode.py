"""The render farm on two Ray nodes of one machine, and through a Ray Client (`ray://`) address.

Two raylets on 127.0.0.1 are the multi-node code path on one host: a head with no CPUs (the
client's driver attaches to it) and a second node with 2 CPUs, each with its own temp folder and
ports. Farm workers can only land on the second node, so every job's model bytes travel from the
driver's object store to the other node's (Ray's object manager), exactly as between machines.
Separate machines and GPU workers are not covered here.

Ray 2.60 replaces 127.0.0.1 in `ray start --address` by the machine's network address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with that setting refuses to start a non-head node. The
second node therefore runs `ray start` with the setting on and Ray's "this machine's address"
lookup answering 127.0.0.1 (see NODE_MAIN): nothing here listens on or connects to another address.

Ray Client needs `grpcio` (`ray[client]`) on both sides; without it the head starts no client
server, the ray:// render test skips, and a ray:// address gives one line saying what to install.
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
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported (loopback only)
ray = pytest.importorskip("ray", reason="the render farm needs Ray (pip install -e '.[farm]')")
from ray._private import ray_constants  # noqa: E402

if ray_constants.ENABLE_RAY_CLUSTER:  # Ray was imported earlier in this session without the setting
    pytest.skip("Ray was imported before the loopback-only setting", allow_module_level=True)

from inference.api import GenerationRequest  # noqa: E402
from inference.engine import Engine, ModelRef  # noqa: E402
from inference.farm.client import Farm, local_threads, render  # noqa: E402
from inference.farm.errors import FarmUnavailableError  # noqa: E402
from inference.farm.jobs import FarmJob, ModelSpec, Notice  # noqa: E402

try:
    import grpc  # noqa: F401 - Ray Client's transport (ray[client])

    HAS_RAY_CLIENT = True
except ImportError:
    HAS_RAY_CLIENT = False

HOUSE = Path(__file__).resolve().parents[3] / "assets" / "house" / "full"
HOUSE_REQUEST = GenerationRequest(prompt="a red house by a lake", seed=1234, steps=4, sampler="euler_a", guidance=3.0,
                                  width=64, height=64)
# `ray start` for the second node: Ray's network-address lookup answers 127.0.0.1 (see the docstring).
NODE_MAIN = ("import ray._private.services as services; "
             "services.node_ip_address_from_perspective = lambda *args, **kwargs: '127.0.0.1'; "
             "from ray.scripts.scripts import main; main()")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _needs_house() -> Path:
    if not (HOUSE / "model_index.json").is_file():
        pytest.skip("the house model is not installed")
    return HOUSE


class _RayProcess:
    """One `ray start … --block` in its own session: SIGTERM stops every Ray process it started."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], main: list[str]):
        self.label = label
        self.temp = tempfile.mkdtemp(prefix=f"rm{label[0]}-", dir="/tmp")  # short: socket paths are length-limited
        self.process = subprocess.Popen(
            [sys.executable, *main, "start", *args, "--node-ip-address=127.0.0.1", "--num-gpus=0",
             "--disable-usage-stats", f"--temp-dir={self.temp}", "--object-store-memory=200000000",
             f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
             f"--runtime-env-agent-port={_free_port()}", f"--node-manager-port={_free_port()}",
             f"--object-manager-port={_free_port()}", "--block"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**env, "XDG_CACHE_HOME": os.path.join(self.temp, "cache")})  # workers' default cache: here
        self.ready = threading.Event()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.log.append(line)
            if "block forever" in line:
                self.ready.set()
        self.ready.set()  # the process ended: let wait() report it

    def wait(self, timeout_s: float) -> None:
        if not self.ready.wait(timeout_s) or self.process.poll() is not None:
            raise RuntimeError(f"ray {self.label} did not start:\n" + "".join(self.log[-20:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # our own session only
            self.process.wait(10)
        shutil.rmtree(self.temp, ignore_errors=True)


class _TwoNodes:
    """A head without CPUs (plus a Ray Client server when grpcio is installed) and a 2-CPU node,
    both on 127.0.0.1 with a fresh auth token. The head starts at once; the second node joins on
    the first `address` (so tests render their local references meanwhile)."""

    ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "OMP_WAIT_POLICY": "PASSIVE",
           # grpcio's fork handlers make the Ray Client server's per-client server die at start.
           "GRPC_ENABLE_FORK_SUPPORT": "0"}

    def __init__(self):
        self.port = _free_port()
        self.client_port = _free_port() if HAS_RAY_CLIENT else None
        self.token = secrets.token_hex(32)
        self.saved = {key: os.environ.get(key) for key in [*self.ENV, "RAY_AUTH_TOKEN"]}
        os.environ.update(self.ENV, RAY_AUTH_TOKEN=self.token)
        self.started = time.perf_counter()
        client = [f"--ray-client-server-port={self.client_port}"] if self.client_port else []
        self.head = _RayProcess("head", ["--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
                                         f"--dashboard-port={_free_port()}", *client],
                                dict(os.environ), ["-m", "ray.scripts.scripts"])
        self.node: _RayProcess | None = None
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        with self.lock:
            if self.node is None:
                self.head.wait(120)
                self.node = _RayProcess("node", [f"--address=127.0.0.1:{self.port}", "--num-cpus=2"],
                                        {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}, ["-c", NODE_MAIN])
                self.node.wait(120)
                self.up_s = time.perf_counter() - self.started
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        for process in (self.node, self.head):  # the node first: it would keep retrying a stopped head
            if process is not None:
                process.stop()
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def cluster():
    started = _TwoNodes()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def expected():
    """Local renders with this process's torch thread count (a job carries it to the worker)."""
    from inference.formats.safetensors_file import save_tensors
    from inference.loader import load_vae

    house = _needs_house()
    # A standalone VAE file (the house VAE, decoder output shifted): a file no worker sees by path.
    root = Path(tempfile.mkdtemp(prefix="rm-vae-"))
    state = {key: value.contiguous() for key, value in load_vae(house / "vae").state_dict().items()}
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 0.3
    vae = root / "house_vae.safetensors"
    save_tensors(state, vae, metadata={"canvasai.norm_groups": "4"})
    engine = Engine()
    images = {"plain": engine.generate(ModelRef(house), HOUSE_REQUEST).image,
              "vae": engine.generate(ModelRef(house, vae_path=vae), HOUSE_REQUEST).image, "vae_file": vae}
    assert not np.array_equal(images["plain"], images["vae"])
    yield images
    shutil.rmtree(root, ignore_errors=True)


def _cpu_node(address: str) -> tuple[str, str]:
    """(head node id, CPU node id) of the connected cluster."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}, nodes
    head = next(n["NodeID"] for n in nodes if not n["Resources"].get("CPU"))
    cpu = next(n["NodeID"] for n in nodes if n["Resources"].get("CPU") == 2)
    return head, cpu


@pytest.mark.slow  # the cluster tests: ~55-70 s together on 2 busy cores (two raylets, three workers)
def test_render_through_client_render_on_the_second_node_equals_local(cluster, expected, tmp_path_factory):
    """`client.render` (the CLI's --farm) to a head without CPUs: the worker starts on the other
    node, gets the house model through the object store, caches it, and renders the local pixels."""
    house = _needs_house()
    threads = local_threads()
    assert threads and threads >= 2  # the worker's own count is 1: the job carries ours
    cache = tmp_path_factory.mktemp("multinode-cache")
    job = FarmJob(HOUSE_REQUEST, ModelSpec.for_path(str(house)), preview_every_s=None, threads=threads)
    address = cluster.address
    events: list = []
    started = time.perf_counter()
    result = render(address, job, on_event=events.append, allow_local=False, token=cluster.token, workers=1,
                    worker_cpus=1, cache_dir=str(cache / "{worker}"), timeout_s=10)
    elapsed = time.perf_counter() - started
    assert np.array_equal(result.image, expected["plain"])  # same seed, same threads: same pixels
    assert result.worker == "w0" and result.info["threads"] == threads and result.info["steps_run"] == 4
    assert not [e for e in events if isinstance(e, Notice)], events
    entry = cache / "w0" / "sha256" / job.model.content_hash  # shipped, verified, published
    assert entry.is_dir() and (entry.parent / f"{job.model.content_hash}.manifest.json").is_file()
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*.safetensors")) == \
        sorted(p.relative_to(house).as_posix() for p in house.rglob("*.safetensors"))
    assert not ray.is_initialized()  # render() disconnected
    assert elapsed < 60, elapsed


@pytest.mark.slow
def test_workers_land_on_the_cpu_node_and_unseen_files_are_shipped_and_cached(cluster, expected, tmp_path):
    """A worker that sees the library (shared_roots) uses the model in place; a VAE file outside
    it is shipped through the object store once, cached on the worker's node, never sent again."""
    house = _needs_house()
    vae = expected["vae_file"]
    farm = Farm.connect(cluster.address, token=cluster.token, workers=1, worker_cpus=1,
                        cache_dir=str(tmp_path / "cache" / "{worker}"), shared_roots=(str(house.parent),),
                        timeout_s=10)
    with farm:
        head_node, cpu_node = _cpu_node(cluster.address)
        assert ray.get_runtime_context().get_node_id() == head_node  # the driver sits on the head
        [name] = farm.worker_names()
        on = ray.get(farm.actor(name).__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()),
                     timeout=30)
        assert on == cpu_node != head_node

        base, vae_spec = ModelSpec.for_path(str(house)), ModelSpec.for_path(str(vae))
        threads = local_threads()
        plain = farm.submit(FarmJob(HOUSE_REQUEST, base, preview_every_s=None, threads=threads)).result(timeout_s=60)
        assert np.array_equal(plain.image, expected["plain"])
        assert farm.transfers == []  # the house model was used in place (the worker sees the library)
        for _ in range(2):
            job = FarmJob(HOUSE_REQUEST, base, vae=vae_spec, preview_every_s=None, threads=threads)
            result = farm.submit(job).result(timeout_s=60)
            assert np.array_equal(result.image, expected["vae"]) and result.info["vae_file"] == vae.name
        assert farm.transfers == [{"worker": name, "model": vae_spec.content_hash, "bytes": vae.stat().st_size}]
        facts = farm.describe()[name]
        assert facts["stats"]["models_received"] == 1 and facts["stats"]["shared_hits"] >= 1
        assert facts["cached"] == [vae_spec.content_hash] and facts["node"] == "127.0.0.1"
    assert (tmp_path / "cache" / name / "sha256" / vae_spec.content_hash / vae.name).is_file()
    assert not ray.is_initialized()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY_CLIENT, reason="Ray Client needs grpcio (pip install 'ray[client]==2.60.0')")
@pytest.mark.filterwarnings("ignore:More than 10MB of messages:UserWarning")  # the model's 16 MB chunks
def test_render_through_a_ray_client_address_equals_local(cluster, expected, tmp_path):
    house = _needs_house()
    cluster.address  # noqa: B018 - both nodes up
    address = f"ray://127.0.0.1:{cluster.client_port}"
    job = FarmJob(HOUSE_REQUEST, ModelSpec.for_path(str(house)), preview_every_s=0, threads=local_threads())
    events: list = []
    result = render(address, job, on_event=events.append, allow_local=False, token=cluster.token, workers=1,
                    worker_cpus=1, cache_dir=str(tmp_path / "cache" / "{worker}"), timeout_s=10)
    assert np.array_equal(result.image, expected["plain"])
    assert result.info["threads"] == job.threads and not [e for e in events if isinstance(e, Notice)]
    assert (tmp_path / "cache" / "w0" / "sha256" / job.model.content_hash).is_dir()  # shipped via the client
    assert not ray.is_initialized()


@pytest.mark.skipif(HAS_RAY_CLIENT, reason="grpcio is installed: the ray:// render test runs instead")
def test_ray_client_address_without_grpcio_is_one_clear_line():
    with socket.socket() as listener:  # something answers TCP there, so the check gets past reachability
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(FarmUnavailableError) as info:
            Farm.connect(f"ray://127.0.0.1:{port}", timeout_s=2)
    assert str(info.value) == "ray:// addresses need Ray Client: pip install 'ray[client]==2.60.0'"
    assert not ray.is_initialized()
