"""What the drill network's tests run inside a host's namespace: small scripts started with
``net.argv(host, ...)``, each printing one JSON line, so that every figure is measured from
the host itself (its routes, its link, its faults)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from typing import Any

from workers.tools.drill.net import Network

REDIS_PINGS = """
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = socket.create_connection((host, port), timeout=5)
rtts = []
for _ in range(n):
    started = time.perf_counter()
    sock.sendall(b"PING\\r\\n")
    assert sock.recv(64).startswith(b"+PONG")
    rtts.append((time.perf_counter() - started) * 1000)
print(json.dumps(rtts))
"""

CONNECT = """
import json, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
started = time.perf_counter()
try:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"PING\\r\\n")
        answer = sock.recv(64).decode()
except OSError as exc:
    answer = f"error: {type(exc).__name__}"
print(json.dumps({"answer": answer, "s": time.perf_counter() - started}))
"""

# ICMP echo through a raw socket (this machine has no ``ping``): ``n`` requests ``interval``
# seconds apart, then a second for late replies; prints the round trips of those answered.
ICMP_PINGS = """
import json, os, select, socket, struct, sys, time
dst, n, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
ident = os.getpid() & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
payload = b"drill-probe-0123456789abcdef"
sent, rtts = {}, {}
def drain(until):
    while (left := until - time.perf_counter()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return
        data = sock.recv(2048)
        ihl = (data[0] & 15) * 4
        kind, _, _, rid, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if kind == 0 and rid == ident and seq in sent and seq not in rtts:
            rtts[seq] = (time.perf_counter() - sent[seq]) * 1000
for seq in range(n):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
    sent[seq] = time.perf_counter()
    sock.sendto(packet, (dst, 0))
    drain(time.perf_counter() + interval)
drain(time.perf_counter() + 1.0)
print(json.dumps({"sent": n, "rtts": sorted(rtts.values())}))
"""

# One TCP connection to Redis held open: each line on stdin sends a PING on it and prints
# what came back, so a test can tell that the very same connection survives a fault.
HELD = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.settimeout(60)
print("connected", flush=True)
for _ in sys.stdin:
    try:
        sock.sendall(b"PING\\r\\n")
        print(sock.recv(64).decode().strip(), flush=True)
    except OSError as exc:
        print(f"error: {type(exc).__name__}", flush=True)
"""


def run_json(net: Network, host: str, script: str, *args: object, timeout: float = 30) -> Any:
    """Run ``script`` with ``args`` in ``host``'s namespace; its last line, decoded."""
    done = subprocess.run(
        net.argv(host, [sys.executable, "-c", script, *map(str, args)]),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def redis_rtts_ms(net: Network, host: str, port: int, n: int = 40) -> list[float]:
    return list(run_json(net, host, REDIS_PINGS, net.services_ip, port, n))


def connect(net: Network, host: str, port: int, timeout_s: float = 1.0) -> dict[str, Any]:
    return dict(run_json(net, host, CONNECT, net.services_ip, port, timeout_s))


def icmp(net: Network, host: str, n: int, interval_s: float) -> dict[str, Any]:
    return dict(run_json(net, host, ICMP_PINGS, net.services_ip, n, interval_s, timeout=60))


def python_in(net: Network, host: str, code: str, timeout: float = 30) -> str:
    """``code`` run by this interpreter in ``host``'s namespace; its stdout."""
    done = subprocess.run(
        net.argv(host, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class HeldConnection:
    """A TCP connection to a Redis port made from ``host`` now and kept open."""

    def __init__(self, net: Network, host: str, port: int) -> None:
        self.proc = subprocess.Popen(
            net.argv(host, [sys.executable, "-c", HELD, net.services_ip, str(port)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.answer(10) == "connected"

    def send_ping(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("PING\n")
        self.proc.stdin.flush()

    def answer(self, timeout_s: float) -> str | None:
        """The next line the connection printed, or None if none came within ``timeout_s``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        ready, _, _ = select.select(
            [self.proc.stdout], [], [], max(0.0, deadline - time.monotonic())
        )
        if not ready:
            return None
        return self.proc.stdout.readline().strip()

    def ping(self, timeout_s: float = 10) -> str | None:
        self.send_ping()
        return self.answer(timeout_s)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
