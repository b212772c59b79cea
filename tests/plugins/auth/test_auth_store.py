"""SubscriberStore lookups against an executor the test completes by hand (no timing)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, Future

from sipline_auth.store import Account, SubscriberStore

KEY = ("carol", "127.0.0.1")


class ManualExecutor(Executor):
    """Queues calls; the test runs them and completes their futures when it wants."""

    def __init__(self) -> None:
        self.calls: list[tuple[Future, object, tuple]] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        self.calls.append((future, fn, args))
        return future


def test_a_lookup_that_just_finished_is_seen_by_the_next_request():
    # The lookup's result reaches the loop's future one callback before the store's
    # own done-callback runs; a request handled in between must see the account.
    account = Account("carol", "127.0.0.1", "secret", {})
    executor = ManualExecutor()
    store = SubscriberStore(dict, lambda user, domain: account, executor)

    async def main():
        prefetch = asyncio.create_task(store.fetch(KEY))
        await asyncio.sleep(0)
        [(future, fn, args)] = executor.calls
        future.set_result(fn(*args))
        await asyncio.sleep(0)  # the loop's future is now done, its callbacks still queued
        assert await store.fetch(KEY) is account
        assert await prefetch is account
        assert store.lookups == 1  # applied once
        assert len(executor.calls) == 1  # the second fetch joined the first lookup

    asyncio.run(main())


def test_a_failed_lookup_keeps_memory_and_allows_a_later_one():
    executor = ManualExecutor()
    store = SubscriberStore(dict, lambda user, domain: None, executor, lookup_interval=0)

    async def main():
        first = asyncio.create_task(store.fetch(KEY))
        await asyncio.sleep(0)
        executor.calls[0][0].set_exception(OSError("database is gone"))
        assert await first is None
        assert store.lookups == 0
        second = asyncio.create_task(store.fetch(KEY))
        await asyncio.sleep(0)
        assert len(executor.calls) == 2  # not stuck "in flight"
        future, fn, args = executor.calls[1]
        future.set_result(fn(*args))
        assert await second is None

    asyncio.run(main())
