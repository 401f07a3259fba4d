"""One drill network and its services per test package (and per xdist process): building them
takes about two seconds, and each test leaves them as it found them (healed, cleared)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from workers.tools.drill.net import Network
from workers.tools.drill.services import Services


def require_root_and_ip() -> None:
    if os.geteuid() != 0:
        pytest.skip("drill networks need root (network namespaces, veth, TUN)")
    if shutil.which("ip") is None:
        pytest.skip("drill networks need iproute2's `ip`")


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    require_root_and_ip()
    with Network(log_dir=tmp_path_factory.mktemp("drillnet-logs")) as network:
        yield network


@pytest.fixture(scope="package")
def services(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(net, tmp_path_factory.mktemp("drill-services-logs")) as started:
        yield started
