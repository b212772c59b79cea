"""sipline.db.BatchWriter: batching, retries, refusals and shutdown of a table's writer thread."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from sipline.db import BatchWriter


class Recording(BatchWriter[int]):
    """Writes into a list; fails the way it is told to."""

    def __init__(self, unreachable: int = 0, refuse: frozenset[int] = frozenset()) -> None:
        self.written: list[list[int]] = []
        self.refusals: list[list[int]] = []
        self.unreachable = unreachable  # the next attempts that find the database down
        self.refuse = refuse
        self.gate = threading.Event()
        self.gate.set()
        super().__init__("test table", "test-writer")

    def write_batch(self, batch: list[int]) -> None:
        self.gate.wait(5)
        if self.unreachable:
            self.unreachable -= 1
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if self.refuse & set(batch):
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        self.written.append(list(batch))

    def refused(self, batch: list[int], exc: Exception) -> None:
        self.refusals.append(list(batch))


@pytest.fixture
def writers():
    made: list[Recording] = []
    yield made
    for w in made:
        w.close(timeout=2)


def test_everything_queued_meanwhile_is_one_batch_in_order(writers):
    w = Recording()
    writers.append(w)
    w.gate.clear()  # the thread is busy with the first batch...
    w.submit([1])
    for n in (2, 3, 4):  # ...while these queue up
        w.submit([n])
    w.submit([])  # nothing: not even a batch
    w.gate.set()
    assert w.flush(5)
    assert [n for batch in w.written for n in batch] == [1, 2, 3, 4]
    assert w.transactions == len(w.written) <= 2
    assert w.rows == 4


def test_an_unreachable_database_is_retried_before_anything_later(writers, monkeypatch):
    w = Recording(unreachable=2)
    writers.append(w)
    monkeypatch.setattr(w._closing, "wait", lambda pause: False)  # no real pauses
    w.submit([1])
    w.submit([2])
    assert w.flush(5)
    assert [n for batch in w.written for n in batch] == [1, 2]
    assert w.failures == 2


def test_a_refused_batch_is_not_retried_and_the_next_one_goes_on(writers):
    w = Recording(refuse=frozenset({1}))
    writers.append(w)
    w.submit([1])
    assert w.flush(5)
    w.submit([2])
    assert w.flush(5)
    assert w.refusals == [[1]] and w.written == [[2]] and w.failures == 1


def test_close_gives_up_on_an_unreachable_database_and_says_how_much_is_lost(caplog):
    w = Recording(unreachable=10**9)
    w.submit([1, 2, 3])
    w.close(timeout=0.2)
    assert not w._thread.is_alive()
    assert "3 change(s) lost" in caplog.text
    assert w.written == []
