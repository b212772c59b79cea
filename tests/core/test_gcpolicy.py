"""The collector schedule of a running server (sipline.gcpolicy), on an injected clock."""

from __future__ import annotations

import gc

from sipline.gcpolicy import GC_THRESHOLDS, FullCollections


def test_first_call_starts_the_clock():
    schedule = FullCollections(quiet_below=100, quiet_every=60, force_every=600)
    assert not schedule.due(1000.0, 0)
    assert not schedule.due(1059.0, 0)
    assert schedule.due(1060.0, 0)


def test_quiet_server_collects_every_quiet_period():
    schedule = FullCollections(quiet_below=100, quiet_every=60, force_every=600)
    schedule.due(0.0, 0)
    runs = [t for t in range(0, 301, 5) if schedule.due(float(t), 99)]
    assert runs == [60, 120, 180, 240, 300]


def test_busy_server_waits_for_the_forced_period():
    schedule = FullCollections(quiet_below=100, quiet_every=60, force_every=600)
    schedule.due(0.0, 0)
    assert not any(schedule.due(float(t), 100) for t in range(5, 600, 5))
    assert schedule.due(600.0, 100_000)
    assert not schedule.due(605.0, 100_000)


def test_quiet_after_load_collects_soon_after_the_last_run():
    schedule = FullCollections(quiet_below=100, quiet_every=60, force_every=600)
    schedule.due(0.0, 0)
    assert not schedule.due(300.0, 5000)  # busy: not yet
    assert schedule.due(305.0, 10)  # quiet again, and the last run is 305 s old


def test_thresholds_make_every_second_young_collection_cover_the_middle_generation():
    saved = gc.get_threshold()
    collected = []

    def record(phase, info):
        if phase == "stop":
            collected.append(info["generation"])

    gc.collect()  # every generation's count starts at 0
    gc.callbacks.append(record)
    try:
        gc.set_threshold(*GC_THRESHOLDS)
        keep = []
        for _ in range(4 * GC_THRESHOLDS[0] + 10):
            keep.append([])  # each list is a new tracked object
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*saved)
    assert collected[:4] == [0, 1, 0, 1]
    assert 2 not in collected
