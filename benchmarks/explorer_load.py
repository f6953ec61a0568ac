"""Load test of the explorer's decode endpoint on loopback: latency percentiles and throughput.

Starts ``latent-atlas explore``'s server (``latent_atlas.explorer.serve``, so with the same torch
threading) in a subprocess on a free 127.0.0.1 port, then measures

1. one client, single-code decodes (the idle latency),
2. ``--clients`` concurrent clients (8 by default), each sending single-code decodes back to back,
3. one client sending batches of ``--batch`` codes (64 by default),
4. when a second run is compared: one client asking for the corresponding point of a code in the compared
   run (map through the alignment, decode there), what the page asks beside every decode,

each bounded by a request count and a time limit, and 2. again with Python's ``http.client`` (``--also``) for
comparison. The clients are ``SocketConnection``s by default (``--client``): keep-alive HTTP/1.1 over a socket,
the answer framed by its Content-Length, as a browser's native HTTP stack reads it. ``http.client`` parses each
answer's headers in Python, and on 2 cores its 8 client threads, which share one GIL, then add about 3 ms to
every round trip of a batch (both figures are printed). Every request decodes a fresh random code drawn
uniformly inside the codes' range (seeded), so nothing is served from a cache. Nothing leaves loopback.
The runs are the server's default pair (a study's first VAE and its AE), or ``--run`` / ``--compare``; they
are loaded and aligned before the clock starts.

    .venv/bin/python benchmarks/explorer_load.py study
    .venv/bin/python benchmarks/explorer_load.py RUN_DIR [RUN_DIR2] --requests 300 --check

``--check`` exits with status 1 when the targets are missed (p99 <= 20 ms for single codes under
``--clients`` clients, p99 < 100 ms for a batch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

HOST = "127.0.0.1"
SINGLE_P99_TARGET_MS = 20.0
BATCH_P99_TARGET_MS = 100.0
SERVER_CODE = ("import sys; from latent_atlas.explorer import serve; "
               "serve(sys.argv[2:], host='127.0.0.1', port=0, torch_threads=int(sys.argv[1]))")


@dataclass
class Scenario:
    name: str
    latencies_ms: np.ndarray  # (n,)
    seconds: float
    codes_per_request: int
    server_cpu_seconds: float | None = None  # the server process's CPU time over the scenario
    client_cpu_seconds: float | None = None  # this process's (the clients') CPU time over the scenario

    def per_request_ms(self, cpu_seconds: float | None) -> str:
        return "-" if cpu_seconds is None else f"{cpu_seconds * 1e3 / len(self.latencies_ms):.2f}"

    def row(self) -> str:
        p50, p90, p99 = np.percentile(self.latencies_ms, [50, 90, 99])
        rate = len(self.latencies_ms) / self.seconds
        return (f"{self.name:<46} {len(self.latencies_ms):>6} {p50:>7.2f} {p90:>7.2f} {p99:>7.2f} "
                f"{self.latencies_ms.max():>7.2f} {rate:>8.0f} {rate * self.codes_per_request:>9.0f} "
                f"{self.per_request_ms(self.server_cpu_seconds):>8} {self.per_request_ms(self.client_cpu_seconds):>8}")

    def summary(self) -> dict:
        p50, p90, p99 = np.percentile(self.latencies_ms, [50, 90, 99])
        return {"requests": len(self.latencies_ms), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
                "max_ms": float(self.latencies_ms.max()), "requests_per_s": len(self.latencies_ms) / self.seconds,
                "codes_per_request": self.codes_per_request, "server_cpu_seconds": self.server_cpu_seconds,
                "client_cpu_seconds": self.client_cpu_seconds}


HEADER = (f"{'scenario':<46} {'n':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'req/s':>8} {'codes/s':>9} {'server':>8} {'client':>8}  (CPU ms per request)")


def start_server(folders: list[str], torch_threads: int) -> tuple[subprocess.Popen, int]:
    """The explorer in a subprocess; returns it and the port it printed."""
    process = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(torch_threads), *folders],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        _, errors = process.communicate()
        raise SystemExit(f"the explorer did not start: {line.strip()} {errors.strip()}")
    port = int(line.split("http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    return process, port


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), or None elsewhere."""
    try:
        fields = open("/proc/stat", encoding="ascii").readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class CpuMeter:
    """How many CPUs other processes kept busy while the scenarios ran (everything but server and clients)."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.start = self._sample()

    def _sample(self) -> tuple | None:
        busy, server = busy_cpu_seconds(), process_cpu_seconds(self.server_pid)
        if busy is None or server is None:
            return None
        times = os.times()
        return time.perf_counter(), busy, server, times.user + times.system

    def others(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, server, own = (b - a for a, b in zip(self.start, end))
        return max(0.0, (busy - server - own) / wall)


def get_json(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def post_json(port: int, path: str, body: dict) -> dict:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}: {payload[:200]!r}")
        return json.loads(payload)
    finally:
        connection.close()


class HttpClientConnection:
    """A keep-alive ``http.client`` connection, with ``SocketConnection``'s ``post`` and ``close``."""

    def __init__(self, port: int, path: str, timeout: float = 30.0):
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.path = path

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.connection.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


class SocketConnection:
    """A keep-alive HTTP/1.1 connection that sends a POST and reads the answer framed by its Content-Length, as a
    browser's native HTTP stack does, without ``http.client``'s header parsing in Python (``email.parser``).

    That parsing costs the load generator about 0.35 ms of CPU per answer, and its client threads share one GIL:
    8 answers of a batch then take about 3 ms one after another on the same 2 cores as the server, inside every
    round trip measured. An answer without a Content-Length (chunked) or a closed connection is an error.
    """

    def __init__(self, port: int, path: str, timeout: float = 30.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n".encode()
        self.buffer = b""

    def _read_until(self, enough: Callable[[bytes], bool]) -> None:
        while not enough(self.buffer):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, payload) of one POST of a JSON body."""
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._read_until(lambda buffer: b"\r\n\r\n" in buffer)
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
        if b"content-length" not in fields:
            raise RuntimeError(f"an answer without a Content-Length: {header[:200]!r}")
        length = int(fields[b"content-length"])
        self._read_until(lambda buffer: len(buffer) >= length)
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), payload

    def close(self) -> None:
        self.sock.close()


def client(connect: Callable[[int, str], Any], port: int, path: str, bodies: list[bytes], deadline: float,
           out: list, errors: list) -> None:
    """Send the bodies one after another on one keep-alive connection (``connect(port, path)``), appending each
    latency (ms)."""
    connection = connect(port, path)
    try:
        for body in bodies:
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            status, payload = connection.post(body)
            elapsed = (time.perf_counter() - started) * 1e3
            if status != 200:
                raise RuntimeError(f"{path} answered {status}: {payload[:200]!r}")
            out.append(elapsed)
    except Exception as exc:  # reported by run_scenario in the main thread
        errors.append(exc)
    finally:
        connection.close()


CLIENTS = {"socket": SocketConnection, "http.client": HttpClientConnection}


def random_bodies(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int, batch: int,
                  **extra: str) -> list[bytes]:
    codes = rng.uniform(low, high, size=(n, batch, len(low)))  # (n, batch, D)
    return [json.dumps({**extra, "codes": np.round(c, 5).tolist()}).encode() for c in codes]


def run_scenario(name: str, port: int, path: str, client_bodies: list[list[bytes]], max_seconds: float,
                 codes_per_request: int, server_pid: int | None = None, connect: Callable[[int, str], Any] = SocketConnection
                 ) -> Scenario:
    latencies: list[list[float]] = [[] for _ in client_bodies]
    errors: list[Exception] = []
    deadline = time.perf_counter() + max_seconds
    threads = [threading.Thread(target=client, args=(connect, port, path, bodies, deadline, out, errors))
               for bodies, out in zip(client_bodies, latencies)]
    server_before = None if server_pid is None else process_cpu_seconds(server_pid)
    client_before = sum(os.times()[:2])
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    client_cpu = sum(os.times()[:2]) - client_before
    server_after = None if server_pid is None else process_cpu_seconds(server_pid)
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    if errors:
        raise SystemExit(f"{name}: a client failed: {errors[0]}")
    return Scenario(name, np.concatenate([np.asarray(x) for x in latencies]), seconds, codes_per_request,
                    server_cpu, client_cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="run, study or sweep folders to serve")
    parser.add_argument("--run", help="the run to decode (default: the server's default run)")
    parser.add_argument("--compare", help="the run to compare with (default: the server's default; 'none': none)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="single-code requests per client")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batch-requests", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time limit per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads in the server (explore uses 1)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="socket",
                        help="the HTTP client of every scenario (default: socket, see SocketConnection)")
    parser.add_argument("--also", choices=["", *sorted(CLIENTS)], default="http.client",
                        help="the concurrent clients' scenario again with this client, for comparison ('' or the "
                             "same as --client: not run)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a latency target is missed")
    args = parser.parse_args(argv)

    process, port = start_server(args.folders, args.torch_threads)
    try:
        listing = get_json(port, "/api/runs")
        run_id = args.run or listing["default"]["a"]
        other = listing["default"]["b"] if args.compare is None else (None if args.compare == "none" else args.compare)
        info = get_json(port, f"/api/runs/{run_id}")  # loads the run
        if "code_min" not in info:
            raise SystemExit(f"run {run_id} cannot be served: {info}")
        path = f"/api/runs/{run_id}/decode"
        low, high = np.asarray(info["code_min"]), np.asarray(info["code_max"])
        if other is not None:  # load the compared run and fit the alignment before the clock starts
            post_json(port, f"/api/runs/{run_id}/correspond", {"target": other, "codes": [info["code_median"]]})
        rng = np.random.default_rng(args.seed)
        run_scenario("warm-up", port, path, [random_bodies(rng, low, high, 50, 1)], args.max_seconds, 1)
        meter = CpuMeter(process.pid)
        connect = CLIENTS[args.client]

        def concurrent(client_name: str) -> Scenario:
            return run_scenario(f"single code, {args.clients} clients, {client_name}", port, path,
                                [random_bodies(rng, low, high, args.requests, 1) for _ in range(args.clients)],
                                args.max_seconds, 1, process.pid, CLIENTS[client_name])

        scenarios = [
            run_scenario("single code, 1 client", port, path, [random_bodies(rng, low, high, args.requests, 1)],
                         args.max_seconds, 1, process.pid, connect),
            concurrent(args.client),
            run_scenario(f"batch of {args.batch}, 1 client", port, path,
                         [random_bodies(rng, low, high, args.batch_requests, args.batch)], args.max_seconds,
                         args.batch, process.pid, connect),
        ]
        if args.also and args.also != args.client:
            scenarios.append(concurrent(args.also))
        if other is not None:
            scenarios.append(run_scenario(
                f"corresponding point in {other[:12]}, 1 client", port, f"/api/runs/{run_id}/correspond",
                [random_bodies(rng, low, high, args.requests, 1, target=other)], args.max_seconds, 1, process.pid,
                connect))
        others = meter.others()
    finally:
        stop_server(process)

    print(f"explorer decode latency on {HOST}: run {info['id']} ({info['kind']}, latent dim {info['latent_dim']}), "
          f"{os.cpu_count()} CPUs, torch threads {args.torch_threads}, other processes busy "
          f"{'unknown' if others is None else f'{others:.2f} CPUs'} during the run")
    print(HEADER)
    for scenario in scenarios:
        print(scenario.row())
    single, batch = scenarios[1], scenarios[2]
    single_p99 = float(np.percentile(single.latencies_ms, 99))
    batch_p99 = float(np.percentile(batch.latencies_ms, 99))
    met = single_p99 <= SINGLE_P99_TARGET_MS and batch_p99 < BATCH_P99_TARGET_MS
    print(f"targets: single-code p99 {single_p99:.1f} ms with {args.client} clients (<= {SINGLE_P99_TARGET_MS:g}), "
          f"batch p99 {batch_p99:.1f} ms (< {BATCH_P99_TARGET_MS:g}): {'met' if met else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"run": info["id"], "compared": other, "torch_threads": args.torch_threads,
                       "other_cpus_busy": others,
                       "scenarios": {s.name: s.summary() for s in scenarios}}, handle, indent=2)
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
