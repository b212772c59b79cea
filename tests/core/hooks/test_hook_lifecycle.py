"""startup, shutdown and timer with a real server running in a thread."""

from __future__ import annotations

import asyncio
import logging
import threading

from hookkit import sip_request, start_fails

from sipline.hooks import hookimpl
from sipline.testing import inprocess_server, wait_for


class Lifecycle:
    def __init__(self, name: str, log: list) -> None:
        self.name = name
        self.log = log

    @hookimpl
    def startup(self, server):
        # Nothing is listening yet while plugins prepare.
        self.log.append(("startup", self.name, len(server.transports)))

    @hookimpl
    def shutdown(self, server):
        self.log.append(("shutdown", self.name, len(server.transports)))


def test_hook_startup_before_listening_in_pipeline_order():
    log: list = []
    plugins = [("a", Lifecycle("a", log)), ("b", Lifecycle("b", log))]
    with inprocess_server(plugins=plugins) as srv:
        assert log == [("startup", "a", 0), ("startup", "b", 0)]
        assert len(srv.server.transports) == 2  # listening once every startup ran


def test_hook_startup_may_be_async_and_is_awaited(client_for):
    ready: list[str] = []

    class LoadsData:
        @hookimpl
        async def startup(self, server):
            await asyncio.sleep(0.01)
            ready.append(f"loaded, {len(server.transports)} listeners")
            server.allowed_methods.add("HELLO")

    with inprocess_server(plugins=[("loads", LoadsData())]) as srv:
        assert ready == ["loaded, 0 listeners"]
        # What startup added is announced once startup finished.
        client = client_for(srv)
        allow = client.request(sip_request(srv, client)).get("allow") or ""
        assert "HELLO" in allow


def test_hook_startup_failure_names_plugin():
    class Broken:
        @hookimpl
        def startup(self, server):
            raise FileNotFoundError("rules.csv")

    error = start_fails([("broken", Broken())])
    assert "'broken'" in str(error)
    assert "rules.csv" in str(error)


def test_hook_shutdown_reverse_order_after_listeners_stop():
    log: list = []
    plugins = [("a", Lifecycle("a", log)), ("b", Lifecycle("b", log)), ("c", Lifecycle("c", log))]
    with inprocess_server(plugins=plugins):
        log.clear()
    assert log == [("shutdown", "c", 0), ("shutdown", "b", 0), ("shutdown", "a", 0)]


def test_hook_shutdown_async_and_failures_contained(caplog):
    log: list = []

    class Flushes:
        @hookimpl
        async def shutdown(self, server):
            await asyncio.sleep(0.01)
            log.append("flushed")

    class Broken:
        @hookimpl
        def shutdown(self, server):
            raise RuntimeError("cannot close")

    caplog.set_level(logging.ERROR, logger="sipline")
    # Reverse order: "broken" runs first and fails; "flushes" still runs.
    with inprocess_server(plugins=[("flushes", Flushes()), ("broken", Broken())]):
        pass
    assert log == ["flushed"]
    assert any("'broken'" in r.getMessage() and "shutdown" in r.getMessage() for r in caplog.records)


FAST_TIMER = {"server": {"timer_interval": 0.05}}


def test_hook_timer_fires_with_now():
    ticks: list[float] = []

    class Ticks:
        @hookimpl
        def timer(self, server, now):
            assert server.transports  # the timer runs while the server listens
            ticks.append(now)

    with inprocess_server(FAST_TIMER, plugins=[("ticks", Ticks())]) as srv:
        wait_for(lambda: len(ticks) >= 3, what="three timer ticks")
        loop_now = srv.call(_loop_time())
    assert all(isinstance(t, float) for t in ticks)
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    # ``now`` is the loop's monotonic clock, about one interval apart.
    assert ticks[2] <= loop_now
    assert ticks[1] - ticks[0] >= 0.04


async def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def test_hook_timer_may_take_only_some_arguments():
    seen: list = []

    class OnlyNow:
        @hookimpl
        def timer(self, now):
            seen.append(now)

    with inprocess_server(FAST_TIMER, plugins=[("only_now", OnlyNow())]):
        wait_for(lambda: len(seen) >= 1, what="a timer tick")


def test_hook_timer_async_impl_not_reentered():
    gate = threading.Event()
    state = {"started": 0, "finished": 0, "sync_ticks": 0, "ticks_while_busy": 0}

    class SlowAsync:
        @hookimpl
        def timer(self, server, now):
            state["started"] += 1

            async def expire():
                while not gate.is_set():
                    await asyncio.sleep(0.005)
                state["finished"] += 1

            return expire()

    class Counter:
        @hookimpl
        def timer(self, server, now):
            state["sync_ticks"] += 1
            if state["started"] == 1 and not state["finished"]:
                state["ticks_while_busy"] += 1

    with inprocess_server(FAST_TIMER, plugins=[("slow", SlowAsync()), ("counter", Counter())]):
        wait_for(lambda: state["ticks_while_busy"] >= 3, what="ticks while the slow timer runs")
        # The slow plugin's tick is skipped while its awaitable runs; others tick on.
        assert state["started"] == 1
        gate.set()
        wait_for(lambda: state["started"] >= 2, what="the slow timer's next tick")
        assert state["finished"] >= 1


def test_hook_timer_exception_is_contained(caplog):
    calls: list[float] = []

    class Flaky:
        @hookimpl
        def timer(self, now):
            calls.append(now)
            raise RuntimeError("probe failed")

    caplog.set_level(logging.ERROR, logger="sipline")
    with inprocess_server(FAST_TIMER, plugins=[("flaky", Flaky())]):
        wait_for(lambda: len(calls) >= 2, what="a second tick after a failing one")
    assert any("'flaky'" in r.getMessage() and "timer" in r.getMessage() for r in caplog.records)
