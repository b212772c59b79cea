"""sipline.stats: slots shared by forked workers, kinds, selection, reset, Prometheus."""

from __future__ import annotations

import os
import warnings

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sipline.stats import (
    CORE_COUNTERS,
    RCV_REQUESTS,
    TM_2XX,
    TM_6XX,
    TM_FINAL_BASE,
    Counter,
    Gauge,
    SharedSlots,
    Statistics,
    StatisticsError,
    metric_name,
)


def metrics(stats: Statistics) -> dict[str, float]:
    text, ctype = stats.prometheus()
    assert ctype.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[sample.name] = sample.value
    return out


def test_core_counters_have_fixed_slots():
    stats = Statistics()
    assert [s.name for s in stats][: len(CORE_COUNTERS)] == [n for n, _ in CORE_COUNTERS]
    stats.values[RCV_REQUESTS] += 3
    assert stats.get(["core:rcv_requests"]) == {"core:rcv_requests": 3}
    assert TM_FINAL_BASE + 2 == TM_2XX and TM_FINAL_BASE + 6 == TM_6XX


def test_counter_handle_gauge_handle_and_function_gauge():
    stats = Statistics()
    hits = stats.register("acl:hits", help="hits")
    level = stats.register("acl:level", kind="gauge")
    assert isinstance(hits, Counter) and type(level) is Gauge
    hits.inc()
    hits.inc(4)
    level.set(10)
    level.dec(3)
    assert stats.register("acl:rules", function=lambda: 7) is None  # a computed gauge
    assert stats.get(["acl:"]) == {"acl:hits": 5, "acl:level": 7, "acl:rules": 7}
    assert [s.kind for s in stats.select(["acl:"])] == ["counter", "gauge", "gauge"]
    assert stats.handle("acl:hits").local == 5


@pytest.mark.parametrize("name", ["nogroup", ":x", "g:"])
def test_name_needs_group(name):
    with pytest.raises(StatisticsError, match="group:name"):
        Statistics().register(name)


def test_duplicate_and_bad_kind():
    stats = Statistics()
    with pytest.raises(StatisticsError, match="already registered"):
        stats.register("core:rcv_requests")
    with pytest.raises(StatisticsError, match="kind"):
        stats.register("a:b", kind="histogram")


def test_capacity_is_enforced():
    stats = Statistics(SharedSlots(capacity=len(CORE_COUNTERS) + 1))
    stats.register("a:one")
    with pytest.raises(StatisticsError, match="no slot left"):
        stats.register("a:two")
    stats.register("a:computed", function=lambda: 1)  # computed on read: no slot needed


def test_select_names_groups_all_and_errors():
    stats = Statistics()
    stats.register("usrloc:contacts", function=lambda: 2)
    assert [s.name for s in stats.select(["usrloc:", "core:rcv_requests", "usrloc:contacts"])] == [
        "usrloc:contacts", "core:rcv_requests"]
    assert len(stats.select(["all"])) == len(stats)
    with pytest.raises(StatisticsError, match="no statistics group 'nope'"):
        stats.select(["nope:"])
    with pytest.raises(StatisticsError, match="unknown statistic 'core:nope'"):
        stats.select(["core:nope"])


def test_reset_uses_a_baseline_and_leaves_gauges():
    stats = Statistics()
    hits = stats.register("acl:hits")
    level = stats.register("acl:level", kind="gauge")
    hits.inc(5)
    level.set(4)
    assert stats.reset(["acl:"]) == ["acl:hits"]
    assert stats.get(["acl:"]) == {"acl:hits": 0, "acl:level": 4}
    hits.inc(2)
    assert stats.get(["acl:hits"]) == {"acl:hits": 2}
    assert hits.local == 7  # the worker's own slot was not written by the reset


def test_function_counter_is_published_and_resettable():
    count = [10]
    stats = Statistics()
    assert stats.register("registrar:accepted_regs", kind="counter",
                          function=lambda: count[0]) is None
    assert stats.get(["registrar:accepted_regs"]) == {"registrar:accepted_regs": 10}
    stats.reset(["registrar:"])
    count[0] = 13
    assert stats.get(["registrar:accepted_regs"]) == {"registrar:accepted_regs": 3}


def test_a_broken_function_does_not_break_the_rest():
    stats = Statistics()
    stats.register("x:bad_counter", kind="counter", function=lambda: 1 / 0)
    stats.register("x:ok", function=lambda: 1)
    stats.publish()
    values = metrics(stats)
    assert values["sipline_x_ok"] == 1.0


def test_forked_workers_sum_exactly():
    """Four processes increment their own rows 20000 times each, no lock: exact sum."""
    shared = SharedSlots(workers=4)
    names = [Statistics(shared, w) for w in range(4)]
    counters = [s.register("load:hits") for s in names]
    pids = []
    for w in range(1, 4):
        with warnings.catch_warnings():  # 3.12+: fork() in a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                for _ in range(20000):
                    counters[w].inc()
                    names[w].values[RCV_REQUESTS] += 1
            finally:
                os._exit(0)
        pids.append(pid)
    for _ in range(20000):
        counters[0].inc()
        names[0].values[RCV_REQUESTS] += 1
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    reader = names[0]
    assert reader.get(["load:hits", "core:rcv_requests"]) == {
        "load:hits": 80000, "core:rcv_requests": 80000}
    assert [names[w].handle("load:hits").local for w in range(4)] == [20000] * 4


def test_worker_headers_for_ps():
    shared = SharedSlots(workers=2)
    shared.supervisor_pid = 4242
    shared.mark_started(1, mi=True)
    procs = shared.processes()
    assert shared.supervisor_pid == 4242
    assert procs[0]["pid"] == 0 and not procs[0]["running"]
    assert procs[1]["pid"] == os.getpid() and procs[1]["running"] and procs[1]["mi"]
    shared.mark_stopped(1)
    assert not shared.processes()[1]["running"]


def test_prometheus_exposition_parses():
    stats = Statistics()
    stats.values[RCV_REQUESTS] += 12
    stats.register("tm:inuse_transactions", kind="gauge", function=lambda: 3, per_worker=True)
    values = metrics(stats)
    assert values["sipline_core_rcv_requests_total"] == 12.0
    assert values["sipline_tm_2xx_transactions_total"] == 0.0
    assert values["sipline_tm_inuse_transactions"] == 3.0
    assert metric_name("tm:UAS_transactions") == "sipline_tm_UAS_transactions"
    assert metric_name("my-plugin:a.b") == "sipline_my_plugin_a_b"
