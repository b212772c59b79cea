"""FakeClock, AsyncioClock and TimerConfig."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from sipline.transaction import AsyncioClock, FakeClock, TimerConfig


def test_fake_clock_fires_due_callbacks_in_time_order() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: fired.append(("b", clock.time())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.time())))
    clock.call_later(1.0, lambda: fired.append(("a2", clock.time())))
    clock.call_later(3.5, lambda: fired.append(("c", clock.time())))
    assert clock.advance(2.0) == 3
    assert fired == [("a", 1.0), ("a2", 1.0), ("b", 2.0)]
    assert clock.time() == 2.0
    assert clock.pending == 1
    clock.advance(10)
    assert fired[-1] == ("c", 3.5)
    assert clock.time() == 12.0


def test_fake_clock_fires_callbacks_scheduled_during_advance() -> None:
    clock = FakeClock()
    fired: list[float] = []

    def tick(n: int) -> None:
        fired.append(clock.time())
        if n:
            clock.call_later(1.0, tick, n - 1)

    clock.call_later(0.5, tick, 3)
    clock.advance(2.6)
    assert fired == [0.5, 1.5, 2.5]
    clock.advance(1.0)
    assert fired == [0.5, 1.5, 2.5, 3.5]
    assert clock.pending == 0


def test_fake_clock_cancel_and_args() -> None:
    clock = FakeClock()
    got: list[object] = []
    h = clock.call_later(1.0, got.append, "x")
    clock.call_later(1.0, got.append, "y")
    h.cancel()
    assert clock.pending == 1
    assert clock.next_due() == 1.0
    clock.advance(1.0)
    assert got == ["y"]
    h.cancel()  # cancelling a fired or cancelled handle is harmless
    assert clock.next_due() is None
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_fake_clock_zero_delay_and_run_all() -> None:
    clock = FakeClock(start=100.0)
    got: list[float] = []
    clock.call_later(0, lambda: got.append(clock.time()))
    clock.call_later(-5, lambda: got.append(clock.time()))
    assert clock.advance(0) == 2
    assert got == [100.0, 100.0]
    clock.call_later(30, lambda: got.append(clock.time()))
    clock.call_later(7, lambda: got.append(clock.time()))
    assert clock.run_all() == 2
    assert got[2:] == [107.0, 130.0]


def test_asyncio_clock_uses_the_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        clock = AsyncioClock(loop)
        got: list[str] = []
        assert abs(clock.time() - loop.time()) < 1.0
        clock.call_later(0.001, got.append, "fired")
        cancelled = clock.call_later(0.001, got.append, "cancelled")
        cancelled.cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        assert got == ["fired"]
    finally:
        loop.close()


def test_asyncio_clock_defaults_to_the_running_loop() -> None:
    async def main() -> bool:
        clock = AsyncioClock()
        return clock.loop is asyncio.get_running_loop()

    assert asyncio.run(main())


def test_transaction_layer_imports_neither_asyncio_nor_transports() -> None:
    code = (
        "import sys\n"
        "import sipline.transaction, sipline.sip.requests\n"
        "bad = sorted(m for m in sys.modules if m == 'asyncio' or m.startswith('asyncio.')\n"
        "             or m.startswith('sipline.transport') or m == 'pluggy')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_timer_defaults_unreliable_and_reliable() -> None:
    t = TimerConfig()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.a == t.e == t.g == 0.5
    assert t.b == t.f == t.h == t.l == t.m == 32.0
    assert t.d_for(False) == 32.0 and t.d_for(True) == 0.0
    assert t.i_for(False) == 5.0 and t.i_for(True) == 0.0
    assert t.j_for(False) == 32.0 and t.j_for(True) == 0.0
    assert t.k_for(False) == 5.0 and t.k_for(True) == 0.0
    assert t.c == 180.0
    assert t.max_lifetime == 3600.0


def test_timer_config_derives_from_t1_t2_t4() -> None:
    t = TimerConfig(t1=0.1, t2=2.0, t4=3.0, d=40.0, c=200.0, max_lifetime=None)
    assert t.b == pytest.approx(6.4)
    assert t.h == t.f == t.l == t.m == pytest.approx(6.4)
    assert t.j_for(False) == pytest.approx(6.4)
    assert t.i_for(False) == t.k_for(False) == 3.0
    assert t.d_for(False) == 40.0
    assert t.c == 200.0
    assert t.max_lifetime is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t1": 0},
        {"t1": -1},
        {"t1": 1.0, "t2": 0.5},
        {"t4": -1},
        {"d": -1},
        {"c": 0},
        {"max_lifetime": 0},
    ],
)
def test_timer_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)
