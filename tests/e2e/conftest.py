"""e2e tests: a real ``sipline run`` subprocess on free loopback ports."""

from __future__ import annotations

import pytest

from sipline.testing import free_port, ipv6_available


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """One port free on 127.0.0.1 (UDP+TCP) and one on ::1 when IPv6 is available."""
    out = {"v4": free_port("127.0.0.1")}
    if ipv6_available():
        out["v6"] = free_port("::1")
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a load run of several seconds (deselect with -m 'not slow')")
