"""WheelClock driven by a FakeClock standing in for the event loop (no waiting)."""

from __future__ import annotations

import pytest
from sipline.transaction import FakeClock, WheelClock


class FakeLoop:
    """The two loop methods WheelClock uses, on a FakeClock; counts the loop timers set."""

    def __init__(self, start: float = 1000.0) -> None:
        self.fake = FakeClock(start)
        self.armed = 0

    def time(self) -> float:
        return self.fake.time()

    def call_at(self, when: float, callback):
        self.armed += 1
        return self.fake.call_later(when - self.fake.time(), callback)


@pytest.fixture
def loop():
    return FakeLoop()


def test_a_timer_fires_at_most_one_tick_late_and_never_early(loop):
    wheel = WheelClock(loop, tick=0.01)
    fired = []
    wheel.call_later(0.5, lambda: fired.append(loop.time()))
    loop.fake.advance(0.499)
    assert fired == []
    loop.fake.advance(0.012)
    assert len(fired) == 1 and 1000.5 <= fired[0] <= 1000.511


def test_timers_run_in_time_order_and_same_tick_in_scheduling_order(loop):
    wheel = WheelClock(loop)
    order = []
    wheel.call_later(2.0, order.append, "late")
    wheel.call_later(0.5, order.append, "a")
    wheel.call_later(0.5, order.append, "b")
    wheel.call_later(1.0, order.append, "middle")
    loop.fake.advance(3)
    assert order == ["a", "b", "middle", "late"]


def test_cancel_drops_the_callback_and_its_references(loop):
    wheel = WheelClock(loop)
    fired = []
    keep = wheel.call_later(1.0, fired.append, "kept")
    gone = wheel.call_later(1.0, fired.append, "cancelled")
    gone.cancel()
    assert gone.callback is None and gone.args == ()
    assert wheel.pending == 1
    loop.fake.advance(2)
    assert fired == ["kept"]
    keep.cancel()  # after firing: a harmless no-op
    gone.cancel()
    assert wheel.pending == 0


def test_a_callback_may_cancel_another_timer_of_the_same_tick(loop):
    wheel = WheelClock(loop)
    fired = []
    second = None

    def first():
        fired.append("first")
        second.cancel()

    wheel.call_later(1.0, first)
    second = wheel.call_later(1.0, fired.append, "second")
    loop.fake.advance(2)
    assert fired == ["first"]


def test_a_callback_that_reschedules_itself_runs_on_a_later_tick(loop):
    wheel = WheelClock(loop)
    times = []

    def again():
        times.append(loop.time())
        if len(times) < 4:
            wheel.call_later(0.0, again)  # never in the tick that is running

    wheel.call_later(0.1, again)
    loop.fake.advance(1)
    assert len(times) == 4
    assert all(b > a for a, b in zip(times, times[1:]))


def test_one_loop_timer_serves_many_wheel_timers(loop):
    wheel = WheelClock(loop)
    fired = []
    for i in range(1000):
        wheel.call_later(0.5 + (i % 10) * 0.001, fired.append, i)
    assert loop.armed == 1
    loop.fake.advance(1)
    assert sorted(fired) == list(range(1000))
    assert wheel.pending == 0
    assert loop.fake.pending == 0  # idle: no loop timer left ticking


def test_an_earlier_timer_re_arms_the_loop_timer(loop):
    wheel = WheelClock(loop)
    fired = []
    wheel.call_later(30.0, fired.append, "late")
    wheel.call_later(0.5, fired.append, "early")
    loop.fake.advance(0.6)
    assert fired == ["early"]
    # a sparse wheel jumps to its next timer instead of ticking through 30 s
    armed = loop.armed
    loop.fake.advance(30)
    assert fired == ["early", "late"]
    assert loop.armed - armed <= 2


def test_a_failing_callback_is_logged_and_the_others_still_run(loop, caplog):
    wheel = WheelClock(loop)
    fired = []

    def broken():
        raise RuntimeError("boom")

    wheel.call_later(1.0, broken)
    wheel.call_later(1.0, fired.append, "after")
    loop.fake.advance(2)
    assert fired == ["after"]
    assert "boom" in caplog.text


def test_close_forgets_everything(loop):
    wheel = WheelClock(loop)
    fired = []
    wheel.call_later(1.0, fired.append, 1)
    wheel.close()
    loop.fake.advance(5)
    assert fired == [] and wheel.pending == 0


def test_a_late_wake_up_runs_every_slot_that_passed(loop):
    wheel = WheelClock(loop)
    fired = []
    for delay in (0.1, 0.2, 5.0, 7.5):
        wheel.call_later(delay, fired.append, delay)
    loop.fake.advance(10)  # one call of the FakeLoop covers all: the wheel catches up
    assert fired == [0.1, 0.2, 5.0, 7.5]


def test_tick_must_be_positive(loop):
    with pytest.raises(ValueError):
        WheelClock(loop, tick=0)
