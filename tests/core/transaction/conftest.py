"""Fixtures of the transaction tests: a fake clock, a recording wire and a recording TU."""

from __future__ import annotations

import pytest

from txnkit import AckRecorder, Recorder, Wire

from sipline.transaction import FakeClock, TimerConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timers() -> TimerConfig:
    return TimerConfig()


@pytest.fixture
def wire(clock: FakeClock) -> Wire:
    return Wire(clock)


@pytest.fixture
def tu() -> Recorder:
    return Recorder()


@pytest.fixture
def ack_tu() -> AckRecorder:
    return AckRecorder()
