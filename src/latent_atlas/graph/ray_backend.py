"""Ray as the graph's engine: a local instance on loopback, or an existing cluster at an address.

The local instance is this command's own: started with the CPUs it may use, every Ray server bound to
127.0.0.1, no dashboard, its temporary files and logs in a fresh folder that is deleted at shutdown, and
its workers' output kept out of the terminal (the driver prints the progress). Every process of the
instance carries a session marker in its environment; a run that was killed (so could not shut its
instance down) has its leftover processes stopped and its folder removed by the next run in the same
output folder. Workers die with their raylet (Linux PR_SET_PDEATHSIG), so a killed run cannot leave a
training task writing into a run folder that the next run resumes.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from ..errors import AtlasError
from ..io import read_json, write_json
from .executor import execute
from .task import LEDGER_DIR, Task


class Terminated(KeyboardInterrupt):
    """SIGTERM during a Ray-backed run: handled as an interrupt (Ray stopped, its files removed), exit 143."""


_TERMINATED = threading.Event()  # set by the SIGTERM handler: Ray's calls re-raise it as a plain KeyboardInterrupt


def terminated() -> bool:
    """Whether a SIGTERM stopped a Ray-backed run in this process."""
    return _TERMINATED.is_set()

SESSION_ENV = "LATENT_ATLAS_RAY_SESSION"
SESSION_FILE = "ray-session.json"
# Ray binds its servers to the node's address; on Linux it looks for a routable one unless told that
# clusters are off, which makes the node address (and every listener) 127.0.0.1.
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
_PR_SET_PDEATHSIG = 1
_OBJECT_STORE_BYTES = 256 * 1024**2  # tasks exchange files, not objects: summaries only


def host_and_port(address: str) -> tuple[str, int | None]:
    """A Ray address (``HOST:PORT``, ``ray://HOST:PORT``, ``[IPv6]:PORT`` or ``HOST``) -> (host, port or None)."""
    host, colon, port = address.split("://", 1)[-1].rpartition(":")
    if not colon or not port.isdigit():
        return address.split("://", 1)[-1].strip("[]"), None
    return host.strip("[]"), int(port)


def is_loopback_address(address: str) -> bool:
    """Whether a Ray address names this machine's loopback."""
    host, _ = host_and_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listening(address: str, timeout: float = 10.0) -> None:
    """Fail at once when nothing answers at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address: Ray's own client
    keeps retrying a refused connection for minutes. Other forms ("auto", a host without a port) go to Ray as
    they are."""
    host, port = host_and_port(address)
    if port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise AtlasError(f"could not connect to the Ray cluster at {address}: nothing answers there "
                         f"({exc.strerror or exc})") from None


def auth_token_available() -> bool:
    """Whether this process can send a Ray authentication token: from the environment or Ray's default file."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def processes_with_marker(marker: str) -> list[int]:
    """PIDs (other than this one) whose environment carries ``SESSION_ENV=marker``."""
    needle = f"{SESSION_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_processes(marker: str) -> int:
    """SIGKILL every process of a session; returns how many were found."""
    pids = processes_with_marker(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def clean_leftovers(root: Path) -> None:
    """Stop the processes and remove the temporary folder of an earlier, killed session in ``root``."""
    path = root / LEDGER_DIR / SESSION_FILE
    if not path.is_file():
        return
    try:
        session = read_json(path, what="ray session")
        stop_processes(str(session["marker"]))
        shutil.rmtree(session["temp_dir"], ignore_errors=True)
    except (AtlasError, KeyError, TypeError):
        pass
    path.unlink(missing_ok=True)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _execute_in_worker(task: Task, root: str, threads: int, made_from: dict[str, str] | None) -> dict[str, Any]:
    _die_with_parent()
    return execute(task, root, threads, made_from)


class RayBackend:
    """Submit tasks as Ray remote calls; ``wait`` returns finished ones as (handle, summary, error)."""

    def __init__(self, root: Path, address: str | None = None, max_parallel: int | None = None):
        self.root = Path(root)
        self.address = address
        self.max_parallel = max_parallel
        self.marker = uuid.uuid4().hex
        self.temp_dir: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self._cluster_flag: bool | None = None
        self._sigterm: Any = None  # the SIGTERM handler before ours, while ours is installed
        self._remote = None

    def __enter__(self) -> RayBackend:
        if self.address is None:
            self._start_local()
        else:
            self._connect()
        import ray

        self._trap_sigterm()
        self._remote = ray.remote(max_retries=0)(_execute_in_worker)
        return self

    def _trap_sigterm(self) -> None:
        """Ray's core installs a SIGTERM handler in the driver that aborts the process (a C++ stack dump, nothing
        cleaned up); ours raises ``Terminated`` instead, so a terminated run stops Ray and removes its files the way
        Ctrl-C does. Signal handlers belong to the main thread; elsewhere Ray's stays."""
        if threading.current_thread() is not threading.main_thread():
            return

        def terminate(signum: int, frame: Any) -> None:
            _TERMINATED.set()
            raise Terminated("terminated (SIGTERM)")

        _TERMINATED.clear()
        self._sigterm = signal.signal(signal.SIGTERM, terminate)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _start_local(self) -> None:
        clean_leftovers(self.root)
        self.temp_dir = tempfile.mkdtemp(prefix="latent-atlas-ray-")
        write_json(self.root / LEDGER_DIR / SESSION_FILE,
                   {"marker": self.marker, "temp_dir": self.temp_dir, "driver_pid": os.getpid()})
        self._set_env({SESSION_ENV: self.marker})
        self._keep_loopback()
        import ray

        cpus = self.max_parallel or os.cpu_count() or 1
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=self.temp_dir, log_to_driver=False,
                     logging_level=logging.ERROR, object_store_memory=_OBJECT_STORE_BYTES,
                     namespace="latent-atlas")
        except KeyboardInterrupt:  # Ctrl-C while Ray starts: stop what started, remove its files, then stop
            ray.shutdown()
            self._cleanup()
            raise
        except Exception as exc:
            self._cleanup()
            raise AtlasError(f"could not start a local Ray instance: {exc}") from None
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        if addresses != {"127.0.0.1"}:
            ray.shutdown()
            self._cleanup()
            raise AtlasError(f"the local Ray instance did not bind to loopback (node address {addresses}); "
                             "start latent-atlas in a fresh process")

    def _keep_loopback(self) -> None:
        """Keep Ray on 127.0.0.1: without this, Ray on Linux swaps a loopback address for the machine's own."""
        self._set_env(_LOOPBACK_ENV)
        from ray._private import ray_constants

        # The environment reaches Ray's own processes; this process may have imported Ray before it was set.
        self._cluster_flag = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False

    def _connect(self) -> None:
        check_listening(self.address)
        self._set_env({"RAY_USAGE_STATS_ENABLED": "0"})
        if "RAY_AUTH_MODE" not in os.environ and auth_token_available():
            # `ray start` (Ray >= 2.59) turns token authentication on and writes the token, but a driver joining
            # by address only sends it in token mode; a cluster without authentication ignores the token.
            self._set_env({"RAY_AUTH_MODE": "token"})
            from ray._raylet import Config

            Config.initialize("")  # Ray reads its config once, at import: make this process see token mode too
        if is_loopback_address(self.address):
            self._keep_loopback()
        import ray

        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR,
                     namespace="latent-atlas")
        except Exception as exc:
            self._restore_env()
            hint = ("" if os.environ.get("RAY_AUTH_MODE") or auth_token_available() else
                    " (if the cluster uses token authentication, set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to its "
                    "token)")
            raise AtlasError(f"could not connect to the Ray cluster at {self.address}: {exc}{hint}") from None

    @property
    def capacity(self) -> int:
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def submit(self, task: Task, made_from: dict[str, str] | None = None) -> Any:
        threads = max(1, int(task.cpus))
        return self._remote.options(num_cpus=task.cpus, name=task.id).remote(task, str(self.root), threads,
                                                                              made_from)

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any] | None, BaseException | None]]:
        import ray

        ready, _ = ray.wait(handles, num_returns=1)
        results = []
        for handle in ready:
            try:
                results.append((handle, ray.get(handle), None))
            except ray.exceptions.RayTaskError as exc:
                results.append((handle, None, exc.cause if exc.cause is not None else exc))
            except ray.exceptions.RayError as exc:
                results.append((handle, None, AtlasError(f"Ray lost the task: {exc}")))
        return results

    def __exit__(self, *exc: Any) -> None:
        import ray

        if self._sigterm is not None:  # a second SIGTERM must not cut the cleanup short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            ray.shutdown()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.address is None:
            stop_processes(self.marker)
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
            (self.root / LEDGER_DIR / SESSION_FILE).unlink(missing_ok=True)
        self._restore_env()

    def _restore_env(self) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if self._cluster_flag is not None:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER, self._cluster_flag = self._cluster_flag, None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
