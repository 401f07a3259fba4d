"""A drill's network: hosts as Linux network namespaces on this machine, in a star around the
services host.

One run builds namespaces ``<prefix><tag>-<host>`` (``tfd-3fa9c1-svc``, ``tfd-3fa9c1-w1``, ...)
with a short random tag, so several runs (three pytest-xdist processes, a drill beside them)
never meet. Each non-services host has one veth pair into the services namespace: the host's
end is ``10.200.<i>.2/24``, the services end ``10.200.<i>.1/24``. The services host also holds
one address on its ``lo``, ``SERVICES_IP`` (10.200.0.1/32), and every host routes to it over
its own veth: all hosts use the same URLs. Hosts reach only the services host (nothing
forwards between spokes), which is all a fleet needs: workers and the feed talk to Redis,
PostgreSQL and the broker, never to each other.

Faults, per host:

- ``partition``: the services end of the host's veth goes down. The host loses carrier, its
  routes stay, and every packet to the services host vanishes, as on a cut cable: a new
  connection times out, an established one retransmits. ``heal`` brings the link up again;
  established TCP connections resume (their retransmissions get through).
- ``impair``: delay, jitter and loss. This kernel has no ``netem`` qdisc, so the host's
  traffic to and from the services IP is routed through a pair of TUN devices (one in the
  host's namespace, one in the services namespace) joined by a userspace relay
  (``workers.tools.drill.impair``, a process of its own) that delays and drops packets.
  Source addresses are kept, so established TCP connections carry on through the switch;
  ``clear`` switches the routes back to the veth and stops the relay.

``close`` (also on leaving the ``with`` block) kills every process left in the run's
namespaces and deletes them; it may be called again, from a signal handler included. A run
that died without closing (SIGKILL, a crash of the machine's supervisor) leaves namespaces
behind: ``sweep_leftovers`` removes those of dead runs. A live run is told apart by its owner
file (``/run/tradefleet-drill/<run>``: pid and start time of the process that built it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

NS_PREFIX = "tfd-"
SERVICES_HOST = "svc"
WORKER_HOSTS = ("w1", "w2", "w3")
FEED_HOST = "feed"
SERVICES_IP = "10.200.0.1"
DRILL_SUBNET = "10.200.0.0/16"
NETNS_DIR = Path("/run/netns")
OWNER_DIR = Path("/run/tradefleet-drill")
IFNAME_MAX = 15
HOST_TUN = "tfdimp"
CLONE_NEWNET = 0x40000000
IP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 10.0
RELAY_READY_TIMEOUT_S = 10.0
RELAY_STOP_TIMEOUT_S = 5.0
DATA_DIR_INFIX = "-services-"


class NetworkError(RuntimeError):
    """A step building or changing the drill network failed (the ``ip`` command's words)."""


@dataclass(frozen=True)
class Impairment:
    """What ``impair`` does to a host's link: each packet, each way, waits ``delay_ms`` plus
    or minus up to ``jitter_ms`` (uniform, never below zero) and is dropped with probability
    ``loss``. A round trip therefore takes about twice the delay."""

    delay_ms: float = 20.0
    jitter_ms: float = 10.0
    loss: float = 0.01

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("loss must be between 0 and 1")


@dataclass(frozen=True)
class HostLink:
    """One spoke of the star: a host's namespace, its veth pair and their addresses."""

    host: str
    index: int
    namespace: str
    host_veth: str
    svc_veth: str
    svc_tun: str

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.index}.2"

    @property
    def gateway_ip(self) -> str:
        """The services end of the veth: the next hop to ``SERVICES_IP``."""
        return f"10.200.{self.index}.1"


def link_prefix(prefix: str) -> str:
    """Interface names have at most 15 characters, so a run's veths drop the dashes of its
    namespace prefix: namespaces ``tfd-3fa9c1-w1``, veths ``tfd3fa9c1w1h`` and ``...w1s``."""
    return prefix.replace("-", "")


class Network:
    """The star of one drill run; a context manager (built on entry, torn down on exit)."""

    def __init__(
        self,
        *,
        worker_hosts: Sequence[str] = WORKER_HOSTS,
        feed_host: str = FEED_HOST,
        prefix: str = NS_PREFIX,
        tag: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.prefix = prefix
        self.run_name = f"{prefix}{self.tag}"
        self.services_ip = SERVICES_IP
        self.services_host = SERVICES_HOST
        self.hosts: tuple[str, ...] = (*worker_hosts, feed_host)
        self.log_dir = log_dir
        names = (SERVICES_HOST, *self.hosts)
        if len(set(names)) != len(names) or not all(re.fullmatch(r"[a-z0-9]+", h) for h in names):
            raise ValueError(f"host names must be distinct, lowercase letters and digits: {names}")
        short = link_prefix(self.run_name)
        self.links: dict[str, HostLink] = {}
        for index, host in enumerate(self.hosts, start=1):
            link = HostLink(
                host=host,
                index=index,
                namespace=self.namespace(host),
                host_veth=f"{short}{host}h",
                svc_veth=f"{short}{host}s",
                svc_tun=f"imp{host}",
            )
            if max(len(link.host_veth), len(link.svc_tun)) > IFNAME_MAX:
                raise ValueError(f"interface names of {host!r} exceed {IFNAME_MAX} characters")
            self.links[host] = link
        self._relays: dict[str, subprocess.Popen[bytes]] = {}
        self._partitioned: set[str] = set()
        self._started = False
        self._closed = False
        self._previous_sigterm: signal.Handlers | Callable[..., object] | int | None = None

    # -- naming ----------------------------------------------------------------------------

    def namespace(self, host: str) -> str:
        """The namespace of ``host`` (``svc`` or one of ``hosts``) in this run."""
        return f"{self.run_name}-{host}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.namespace(h) for h in (SERVICES_HOST, *self.hosts))

    def argv(self, host: str, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run inside ``host``'s namespace (``ip netns exec`` execs it: the process
        that starts is ``cmd`` itself, so its pid is the one to signal)."""
        self._check_host(host, services_ok=True)
        return ["ip", "netns", "exec", self.namespace(host), *cmd]

    def call_in(self, host: str, fn: Callable[[], T]) -> T:
        """``fn()`` called in a thread of this process that entered ``host``'s namespace (the
        namespace is per thread; the calling thread stays where it is). Sockets ``fn`` opens
        belong to that namespace for their whole life."""
        self._check_host(host, services_ok=True)
        return call_in_netns(self.namespace(host), fn)

    def pids(self) -> set[int]:
        """Every process whose network namespace is one of this run's."""
        found: set[int] = set()
        for ns in self.namespaces:
            found |= netns_pids(ns)
        return found

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Network:
        """Build the namespaces, links, addresses and routes; on any failure tear down what
        was built and raise ``NetworkError``."""
        if self._started:
            return self
        self._started = True
        try:
            _write_owner(self.run_name)
            for ns in self.namespaces:
                _ip("netns", "add", ns)
                call_in_netns(ns, _quiet_netns_sysctls)
                _ip("link", "set", "lo", "up", ns=ns)
            svc = self.namespace(SERVICES_HOST)
            _ip("addr", "add", f"{SERVICES_IP}/32", "dev", "lo", ns=svc)
            for link in self.links.values():
                _ip(
                    "link",
                    "add",
                    link.host_veth,
                    "netns",
                    link.namespace,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.svc_veth,
                    "netns",
                    svc,
                )
                _ip("addr", "add", f"{link.gateway_ip}/24", "dev", link.svc_veth, ns=svc)
                _ip("link", "set", link.svc_veth, "up", ns=svc)
                _ip("addr", "add", f"{link.host_ip}/24", "dev", link.host_veth, ns=link.namespace)
                _ip("link", "set", link.host_veth, "up", ns=link.namespace)
                self._route_via_veth(link)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the relays, kill every process in the run's namespaces, delete them and the
        owner file. Idempotent, and every step is: a close cut short (Ctrl-C, SIGTERM while
        closing) is finished by the next call, from a signal handler or a ``finally``."""
        if self._closed:
            return
        for host in list(self._relays):
            self._stop_relay(host)
        for ns in self.namespaces:
            remove_namespace(ns)
        _remove_owner(self.run_name)
        self._closed = True

    def __enter__(self) -> Network:
        """Build the network; in the main thread SIGTERM becomes ``KeyboardInterrupt`` until
        the block ends, so a terminated run still leaves through ``__exit__`` and closes."""
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    # -- faults ----------------------------------------------------------------------------

    def partition(self, host: str) -> None:
        """Cut ``host`` off the services host: every packet either way is lost (an impaired
        host's relay drops them too) until ``heal``."""
        link = self._link(host)
        self._partitioned.add(host)
        relay = self._relays.get(host)
        if relay is not None:
            relay.send_signal(signal.SIGUSR1)
        _ip("link", "set", link.svc_veth, "down", ns=self.namespace(SERVICES_HOST))

    def heal(self, host: str) -> None:
        """Undo ``partition``: the link comes back as it was (impaired or not)."""
        link = self._link(host)
        _ip("link", "set", link.svc_veth, "up", ns=self.namespace(SERVICES_HOST))
        relay = self._relays.get(host)
        if relay is not None:
            relay.send_signal(signal.SIGUSR2)
        self._partitioned.discard(host)

    def is_partitioned(self, host: str) -> bool:
        return host in self._partitioned

    def impair(
        self,
        host: str,
        delay_ms: float = 20.0,
        jitter_ms: float = 10.0,
        loss: float = 0.01,
        *,
        seed: int | None = None,
    ) -> Impairment:
        """Delay and drop ``host``'s packets to and from the services IP, both ways, through a
        relay process; a host already impaired gets the new figures (a new relay)."""
        link = self._link(host)
        impairment = Impairment(delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss)
        if host in self._relays:
            self.clear(host)
        svc = self.namespace(SERVICES_HOST)
        argv = [
            sys.executable,
            "-m",
            "workers.tools.drill.impair",
            "--host-ns",
            link.namespace,
            "--host-tun",
            HOST_TUN,
            "--svc-ns",
            svc,
            "--svc-tun",
            link.svc_tun,
            "--delay-ms",
            str(impairment.delay_ms),
            "--jitter-ms",
            str(impairment.jitter_ms),
            "--loss",
            str(impairment.loss),
        ]
        if seed is not None:
            argv += ["--seed", str(seed)]
        if host in self._partitioned:
            argv.append("--blocked")
        relay = self._spawn_relay(host, argv)
        self._relays[host] = relay
        try:
            _ip("link", "set", HOST_TUN, "up", ns=link.namespace)
            _ip("link", "set", link.svc_tun, "up", ns=svc)
            _ip(
                "route",
                "replace",
                f"{SERVICES_IP}/32",
                "dev",
                HOST_TUN,
                "src",
                link.host_ip,
                ns=link.namespace,
            )
            _ip("route", "replace", f"{link.host_ip}/32", "dev", link.svc_tun, ns=svc)
        except BaseException:
            self.clear(host)
            raise
        return impairment

    def clear(self, host: str) -> None:
        """Undo ``impair``: routes back on the veth, then the relay stops (its TUN devices go
        with it). Packets the relay still held are lost, as on a link that changes."""
        link = self._link(host)
        if host not in self._relays:
            return
        svc = self.namespace(SERVICES_HOST)
        self._route_via_veth(link)
        with contextlib.suppress(NetworkError):
            _ip("route", "del", f"{link.host_ip}/32", ns=svc)
        self._stop_relay(host)

    def is_impaired(self, host: str) -> bool:
        return host in self._relays

    # -- internals -------------------------------------------------------------------------

    def _check_host(self, host: str, *, services_ok: bool = False) -> None:
        if host in self.links or (services_ok and host == SERVICES_HOST):
            return
        raise ValueError(f"unknown drill host {host!r}")

    def _link(self, host: str) -> HostLink:
        self._check_host(host)
        if self._closed or not self._started:
            raise NetworkError(f"network {self.run_name} is not up")
        return self.links[host]

    def _route_via_veth(self, link: HostLink) -> None:
        _ip(
            "route",
            "replace",
            f"{SERVICES_IP}/32",
            "via",
            link.gateway_ip,
            "dev",
            link.host_veth,
            "src",
            link.host_ip,
            ns=link.namespace,
        )

    def _spawn_relay(self, host: str, argv: list[str]) -> subprocess.Popen[bytes]:
        stderr: int | None = None
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"impair-{host}.log").open("ab")
            stderr = log.fileno()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        finally:
            if log is not None:
                log.close()
        assert proc.stdout is not None
        deadline = time.monotonic() + RELAY_READY_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                break
            line += chunk
        if line.strip() != b"ready":
            proc.kill()
            proc.wait()
            raise NetworkError(f"impairment relay for {host} did not start (said {line!r})")
        return proc

    def _stop_relay(self, host: str) -> None:
        proc = self._relays.pop(host, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=RELAY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- namespaces ------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip()}")


_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(namespace: str) -> None:
    """Move the calling thread into the named network namespace (``setns``; Python 3.11 has no
    ``os.setns``). Only the calling thread moves."""
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({namespace}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(namespace: str, fn: Callable[[], T]) -> T:
    """``fn()`` run in a new thread that first entered ``namespace``; its result or exception."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            enter_netns(namespace)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _quiet_netns_sysctls() -> None:
    """Reverse-path filtering off in a fresh namespace: packets of one host arrive over its
    veth or, impaired, over a TUN device, and must be accepted both ways."""
    for conf in ("all", "default"):
        Path(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter").write_text("0")


def list_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir())


def netns_pids(namespace: str) -> set[int]:
    """The processes in ``namespace`` (``ip netns pids``); empty when it does not exist."""
    done = subprocess.run(
        ["ip", "netns", "pids", namespace],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        return set()
    return {int(tok) for tok in done.stdout.split() if tok.isdigit()}


def remove_namespace(namespace: str) -> None:
    """SIGKILL every process in ``namespace`` until none is left, then delete it. A process
    the kill cannot end (stuck in the kernel) makes this raise rather than leave a namespace
    that only looks deleted (``ip netns delete`` unmounts the name; the namespace lives on
    while a process is in it)."""
    if namespace not in list_namespaces():
        return
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while pids := netns_pids(namespace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pids)
        if time.monotonic() > deadline:
            raise NetworkError(f"processes {sorted(pids)} survive in {namespace}")
        time.sleep(0.01)
    with contextlib.suppress(NetworkError):
        _ip("netns", "delete", namespace)


def _reap(pids: set[int]) -> None:
    """Collect the ones among ``pids`` that are this process's children (else they linger as
    zombies until their ``Popen`` is waited)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# -- owners and leftovers ----------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22):
    with the pid, it names one process even after pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def _write_owner(run_name: str) -> None:
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    (OWNER_DIR / run_name).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")


def _remove_owner(run_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (OWNER_DIR / run_name).unlink()


def run_is_live(run_name: str) -> bool:
    """Whether the process that built run ``run_name`` is still alive."""
    try:
        pid_text, started = (OWNER_DIR / run_name).read_text().split()
    except (OSError, ValueError):
        return False
    return _start_time(int(pid_text)) == started


def sweep_leftovers(prefix: str = NS_PREFIX) -> list[str]:
    """Remove what runs that died without closing left behind: namespaces whose names start
    with ``prefix`` (their processes killed first) and whose run's owner is dead, their owner
    files, their services' data folders in the temporary folder (``<run>-services-*``, a
    PostgreSQL cluster each), and stray veths in this namespace named with
    ``link_prefix(prefix)``. Live runs are left alone. Returns the namespaces removed."""
    removed: list[str] = []
    for ns in list_namespaces():
        if not ns.startswith(prefix):
            continue
        run_name = ns.rsplit("-", 1)[0]
        if run_is_live(run_name):
            continue
        remove_namespace(ns)
        _remove_owner(run_name)
        removed.append(ns)
    short = link_prefix(prefix)
    done = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_S,
        check=False,
    )
    for line in done.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if name.startswith(short):
            with contextlib.suppress(NetworkError):
                _ip("link", "delete", name)
    if OWNER_DIR.is_dir():
        live_namespaces = list_namespaces()
        for owner in OWNER_DIR.iterdir():
            if (
                owner.name.startswith(prefix)
                and not run_is_live(owner.name)
                and not any(ns.startswith(f"{owner.name}-") for ns in live_namespaces)
            ):
                _remove_owner(owner.name)
    for data in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        run_name, infix, _ = data.name.partition(DATA_DIR_INFIX)
        if infix and data.is_dir() and not run_is_live(run_name):
            shutil.rmtree(data, ignore_errors=True)
    return removed
