"""Probing destinations with OPTIONS (OpenSIPS load_balancer probing).

A background task started at startup sends, every ``probing_interval`` seconds, one
probe to each destination that asks for it (``probe_mode`` 2: always; 1: while it is
disabled), through the core's UAC (``server.send_request``): its own client
transaction, ``route_local``, retransmissions. The probes of a round run concurrently,
at most ``probing_max_concurrent`` at a time, each bounded by ``probing_timeout``; a
destination whose previous probe is still out is skipped, so a dead destination never
piles up probes. Nothing waits for a probe but the probe's own task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.proxy import LocalRequestError, build_request

from sipline_load_balancer.balancer import Balancer
from sipline_load_balancer.destinations import Destination

if TYPE_CHECKING:
    from sipline.server import Server

    from sipline_load_balancer.config import LoadBalancerConfig

log = logging.getLogger("sipline.plugin.load_balancer")


class Prober:
    """Sends the probes of one worker and applies their outcome."""

    def __init__(
        self,
        server: Server,
        balancer: Callable[[], Balancer],
        config: LoadBalancerConfig,
        *,
        on_probe: Callable[[Destination, bool], Any] | None = None,
    ) -> None:
        self.server = server
        self._balancer = balancer
        self.config = config
        self.alive_codes = config.alive_codes
        self.on_probe = on_probe
        self._slots = asyncio.Semaphore(config.probing_max_concurrent)

    def is_alive(self, status: int | None) -> bool:
        return status is not None and (200 <= status < 300 or status in self.alive_codes)

    async def run(self) -> None:
        """Probe forever (a task of ``server.spawn``, cancelled when the server stops)."""
        server = self.server
        while not server.transports:  # the listeners are bound after the startup hooks
            await asyncio.sleep(0.02)
        interval = self.config.probing_interval
        while True:
            self.round()
            await asyncio.sleep(interval)

    def round(self) -> int:
        """Start the probes that are due now; returns how many were started."""
        started = 0
        for dst in self._balancer():
            if dst.probing or not Balancer.needs_probe(dst):
                continue
            dst.probing = True
            self.server.spawn(self.probe(dst))
            started += 1
        return started

    async def probe(self, dst: Destination) -> bool:
        """Send one probe to ``dst`` and apply the outcome; True when it answered alive."""
        config = self.config
        try:
            async with self._slots:
                status = await self._ask(dst)
        finally:
            dst.probing = False
        alive = self.is_alive(status)
        change = Balancer.probed(
            dst, alive, status,
            failures_to_disable=config.probing_failure_threshold,
            successes_to_enable=config.probing_success_threshold,
        )
        if self.on_probe is not None:
            self.on_probe(dst, alive)
        if change == "disabled":
            log.warning("load_balancer: destination %d (%s) disabled: %d failed probe(s), "
                        "last %s", dst.id, dst.uri, dst.probe_failures,
                        status if status is not None else "not sent")
        elif change == "enabled":
            log.warning("load_balancer: destination %d (%s) enabled again: it answers probes "
                        "(%s)", dst.id, dst.uri, status)
        return alive

    async def _ask(self, dst: Destination) -> int | None:
        """The final status of one probe (408 when nothing came back in time, None when
        it could not be sent)."""
        config = self.config
        try:
            request = build_request(config.probing_method, dst.uri, from_uri=config.probing_from)
        except ValueError as exc:
            log.warning("load_balancer: no probe for destination %d: %s", dst.id, exc)
            return None
        try:
            response = await asyncio.wait_for(
                self.server.send_request(request, dst.uri), config.probing_timeout)
        except asyncio.TimeoutError:
            return 408
        except LocalRequestError as exc:
            log.debug("load_balancer: probe of destination %d not sent: %s", dst.id, exc)
            return None
        return response.status
