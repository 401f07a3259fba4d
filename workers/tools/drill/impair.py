"""The impairment relay: delay, jitter and loss between two TUN devices, in userspace.

This machine's kernel has no ``netem`` qdisc (nor ``fq``, ``prio``, a matchall classifier),
so ``Network.impair`` routes a host's traffic to and from the services IP through a pair of
TUN devices and starts this module as a process of its own to join them:

    host ns: route SERVICES_IP dev tfdimp  ──▶ relay ──▶ svc ns: imp<host> (injected as received)
    svc ns:  route <host ip>/32 dev imp<host> ──▶ relay ──▶ host ns: tfdimp

The relay enters the host's namespace and creates its TUN device there, then enters the
services namespace and creates the other (a TUN device lives in the namespace it was created
in, whatever its process does afterwards). It prints ``ready`` once both exist; the devices
vanish when it exits (they are not persistent), so a killed relay leaves nothing behind.

Each IP packet read from one device is dropped with probability ``loss`` or written to the
other after ``delay ± jitter`` (uniform, never below zero). Packets keep their order per
direction, as on a real link's FIFO queue: a packet is never sent before the one read before
it, so jitter stretches gaps rather than reorders. SIGUSR1 blocks the link (every packet is
dropped, those waiting included: a partition), SIGUSR2 unblocks it; SIGTERM ends the relay.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from workers.tools.drill.net import enter_netns

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65_535


@dataclass(frozen=True)
class RelayConfig:
    """One relay: which devices it joins, and what it does to the packets between them."""

    host_ns: str
    host_tun: str
    svc_ns: str
    svc_tun: str
    delay_ms: float
    jitter_ms: float
    loss: float
    seed: int | None = None
    blocked: bool = False


@dataclass
class Direction:
    """One way through the relay: when each waiting packet is due, in FIFO order."""

    rng: random.Random
    delay_s: float
    jitter_s: float
    loss: float
    last_due: float = 0.0
    dropped: int = 0
    passed: int = 0

    def due(self, now: float) -> float | None:
        """When a packet read at ``now`` leaves, or None when it is lost."""
        if self.loss > 0 and self.rng.random() < self.loss:
            self.dropped += 1
            return None
        delay = self.delay_s
        if self.jitter_s > 0:
            delay += self.rng.uniform(-self.jitter_s, self.jitter_s)
        self.last_due = max(now + max(0.0, delay), self.last_due)
        self.passed += 1
        return self.last_due


@dataclass
class Relay:
    """Moves packets between ``fd_a`` and ``fd_b`` through two ``Direction`` schedules."""

    fd_a: int
    fd_b: int
    a_to_b: Direction
    b_to_a: Direction
    blocked: bool = False
    waiting: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _seq: int = 0

    def run(self) -> None:
        while True:
            timeout = None
            if self.waiting:
                timeout = max(0.0, self.waiting[0][0] - time.monotonic())
            readable, _, _ = select.select([self.fd_a, self.fd_b], [], [], timeout)
            now = time.monotonic()
            for fd in readable:
                self._read(fd, now)
            self._send_due(time.monotonic())

    def _read(self, fd: int, now: float) -> None:
        out, direction = (self.fd_b, self.a_to_b) if fd == self.fd_a else (self.fd_a, self.b_to_a)
        while True:
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            if self.blocked:
                continue
            due = direction.due(now)
            if due is not None:
                self._seq += 1
                heapq.heappush(self.waiting, (due, self._seq, out, packet))

    def _send_due(self, now: float) -> None:
        while self.waiting and self.waiting[0][0] <= now:
            _, _, out, packet = heapq.heappop(self.waiting)
            if self.blocked:
                continue
            try:
                os.write(out, packet)
            except (BlockingIOError, OSError):
                continue

    def block(self, blocked: bool) -> None:
        """Called from a signal handler: only the flag changes; packets waiting when the link
        is blocked are dropped as they come due."""
        self.blocked = blocked


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (IP packets, no packet-info header) in the calling thread's
    network namespace; a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def build(config: RelayConfig) -> Relay:
    enter_netns(config.host_ns)
    fd_host = open_tun(config.host_tun)
    enter_netns(config.svc_ns)
    fd_svc = open_tun(config.svc_tun)
    rng = random.Random(config.seed)  # noqa: S311 (a simulation, not a secret)

    def direction() -> Direction:
        return Direction(
            rng=rng,
            delay_s=config.delay_ms / 1000,
            jitter_s=config.jitter_ms / 1000,
            loss=config.loss,
        )

    return Relay(
        fd_a=fd_host,
        fd_b=fd_svc,
        a_to_b=direction(),
        b_to_a=direction(),
        blocked=config.blocked,
    )


def parse(argv: Sequence[str]) -> RelayConfig:
    parser = argparse.ArgumentParser(prog="python -m workers.tools.drill.impair")
    parser.add_argument("--host-ns", required=True)
    parser.add_argument("--host-tun", required=True)
    parser.add_argument("--svc-ns", required=True)
    parser.add_argument("--svc-tun", required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=10.0)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--blocked", action="store_true")
    args = parser.parse_args(argv)
    return RelayConfig(
        host_ns=args.host_ns,
        host_tun=args.host_tun,
        svc_ns=args.svc_ns,
        svc_tun=args.svc_tun,
        delay_ms=args.delay_ms,
        jitter_ms=args.jitter_ms,
        loss=args.loss,
        seed=args.seed,
        blocked=args.blocked,
    )


def main(argv: Sequence[str] | None = None) -> None:
    relay = build(parse(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGUSR1, lambda _s, _f: relay.block(True))
    signal.signal(signal.SIGUSR2, lambda _s, _f: relay.block(False))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    relay.run()


if __name__ == "__main__":
    main()
