"""The load balancer without a server: parsing, the selection algorithm, capacity
accounting, reload keeping the counts, probing state, configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sipline_load_balancer import (
    Balancer,
    DestinationSpec,
    LbError,
    LoadBalancerError,
    Session,
    parse_requested,
    parse_resources,
)
from sipline_load_balancer.balancer import parse_flags
from sipline_load_balancer.config import LoadBalancerConfig, RouteInvites, codes_of
from sipline_load_balancer.destinations import BY_OPERATOR, BY_PROBING, BY_SCRIPT


def spec(ident, resources, group=1, uri=None, probe_mode=0, **kw) -> DestinationSpec:
    return DestinationSpec.build(id=ident, group_id=group,
                                 dst_uri=uri or f"sip:192.0.2.{ident}:5060",
                                 resources=resources, probe_mode=probe_mode, **kw)


def start(balancer, group, resources, flags="", dialog=None):
    """What ctx.lb.start does with the table: select, then count."""
    wanted = balancer.requested(resources)
    relative, negative = balancer.flags(flags)
    dst, error = balancer.select(group, wanted, relative, negative)
    if dst is None:
        return None, error
    session = Session(group, wanted, relative, negative, dialog)
    session.hold(dst)
    return session, None


# ------------------------------------------------------------------ parsing
def test_resources_parse_like_the_opensips_column():
    assert parse_resources("pstn=32;transc=8") == {"pstn": 32, "transc": 8}
    assert parse_resources(" pstn = 2 ; ") == {"pstn": 2}
    assert parse_resources({"vm": 4}) == {"vm": 4}
    for bad, why in [("pstn", "no capacity"), ("pstn=x", "whole number"),
                     ("pstn=1;pstn=2", "twice"), ("", "no resource"), ("p s=1", "invalid"),
                     ("pstn=-1", "negative"), ("pstn=fs://u:p@h", "FreeSWITCH")]:
        with pytest.raises(LoadBalancerError, match=why):
            parse_resources(bad)
    assert parse_requested("pstn;transc;pstn") == ("pstn", "transc")
    with pytest.raises(LoadBalancerError, match="no resource requested"):
        parse_requested(" ; ")


def test_destination_specs_are_validated_with_messages_naming_them():
    s = spec(3, "pstn=2", probe_mode=2, attrs="a", description="gw")
    assert (s.id, s.group_id, s.resources, s.probe_mode) == (3, 1, (("pstn", 2),), 2)
    with pytest.raises(LoadBalancerError, match=r"destination 4: dst_uri 'mailto:x' must be"):
        spec(4, "pstn=1", uri="mailto:x")
    with pytest.raises(LoadBalancerError, match="destination 5: probe_mode must be 0"):
        spec(5, "pstn=1", probe_mode=3)
    with pytest.raises(LoadBalancerError, match="id must be >= 1"):
        spec(0, "pstn=1")


def test_flags():
    assert parse_flags("") == (False, False)
    assert parse_flags("rn") == (True, True)
    with pytest.raises(LoadBalancerError, match="unknown load-balancing flag 'x'"):
        parse_flags("x")


# ------------------------------------------------------------------ selection
def test_the_most_free_slots_wins_and_equal_ones_go_to_the_lowest_id():
    lb = Balancer([spec(1, "pstn=2"), spec(2, "pstn=2"), spec(3, "pstn=2")])
    order = [start(lb, 1, "pstn")[0].dst.id for _ in range(6)]
    assert order == [1, 2, 3, 1, 2, 3]  # spread 2/2/2
    assert [d.load["pstn"] for d in lb] == [2, 2, 2]
    session, error = start(lb, 1, "pstn")
    assert session is None and error is LbError.NO_CAPACITY
    assert (error.status, error.reason) == (503, "Service Unavailable")


def test_absolute_and_relative_free_capacity_differ():
    lb = Balancer([spec(1, "pstn=100"), spec(2, "pstn=10")])
    for _ in range(50):
        start(lb, 1, "pstn", dialog=None)  # all on 1 while it has more free slots than 2
    assert [d.load["pstn"] for d in lb] == [50, 0]
    # absolute: 50 free vs 10 free -> 1; relative: 50 % vs 100 % -> 2
    assert lb.select(1, ("pstn",))[0].id == 1
    assert lb.select(1, ("pstn",), relative=True)[0].id == 2


def test_every_requested_resource_counts_and_the_scarcest_one_decides():
    lb = Balancer([spec(1, "pstn=10;transc=1"), spec(2, "pstn=3;transc=5"), spec(3, "pstn=50")])
    session, _ = start(lb, 1, "pstn;transc")
    assert session.dst.id == 2  # 1 has one transcoder slot, 2 has three free on its scarcest
    assert lb.get(2).load == {"pstn": 1, "transc": 1}
    assert lb.select(1, ("transc",))[0].id == 2
    session.release()
    session.release()  # idempotent
    assert lb.get(2).load == {"pstn": 0, "transc": 0} and lb.get(2).calls == 0


def test_no_destination_versus_no_capacity_versus_all_disabled():
    lb = Balancer([spec(1, "pstn=0"), spec(2, "vm=5", group=2)])
    assert lb.select(1, ("pstn",)) == (None, LbError.NO_CAPACITY)
    assert lb.select(1, ("transc",)) == (None, LbError.NO_DESTINATION)
    assert lb.select(9, ("pstn",)) == (None, LbError.NO_DESTINATION)
    assert LbError.NO_DESTINATION.status == 500
    Balancer.set_status(lb.get(2), False)
    assert lb.select(2, ("vm",)) == (None, LbError.DISABLED)


def test_negative_availability_flag_takes_the_least_overloaded():
    lb = Balancer([spec(1, "pstn=1"), spec(2, "pstn=1")])
    start(lb, 1, "pstn")
    start(lb, 1, "pstn")
    start(lb, 1, "pstn", flags="n")  # both full: the first of the equally full ones
    assert lb.select(1, ("pstn",)) == (None, LbError.NO_CAPACITY)
    assert lb.select(1, ("pstn",), negative=True)[0].id == 2


def test_next_skips_the_tried_destinations_and_moves_the_counts():
    lb = Balancer([spec(1, "pstn=2"), spec(2, "pstn=2"), spec(3, "pstn=1")])
    session, _ = start(lb, 1, "pstn")
    assert session.dst.id == 1
    for expected in (2, 3):
        session.tried.append(session.dst)
        dst, _ = lb.select(1, session.resources, exclude=session.tried)
        session.hold(dst)
        assert dst.id == expected
        assert sum(d.load["pstn"] for d in lb) == 1  # the old one's count went back
    session.tried.append(session.dst)
    assert lb.select(1, ("pstn",), exclude=session.tried) == (None, LbError.EXHAUSTED)


def test_disabled_destinations_are_skipped():
    lb = Balancer([spec(1, "pstn=5"), spec(2, "pstn=1")])
    Balancer.set_status(lb.get(1), False)
    assert lb.select(1, ("pstn",))[0].id == 2
    Balancer.set_status(lb.get(1), True)
    assert lb.select(1, ("pstn",))[0].id == 1


def test_find_by_address():
    lb = Balancer([spec(1, "pstn=5", uri="sip:10.0.0.1"), spec(2, "pstn=5", group=2,
                   uri="sip:[2001:db8::1]:5070")])
    assert lb.find("10.0.0.1", 5060).id == 1
    assert lb.find("10.0.0.1", 5060, group_id=2) is None
    assert lb.find("[2001:DB8::1]", 5070).id == 2
    Balancer.set_status(lb.get(2), False)
    assert lb.find("2001:db8::1", 5070, active=True) is None


# ------------------------------------------------------------------ reload
def test_reload_keeps_the_counts_of_unchanged_destinations_only():
    lb = Balancer([spec(1, "pstn=4"), spec(2, "pstn=4"), spec(3, "pstn=4")])
    sessions = [start(lb, 1, "pstn")[0] for _ in range(6)]  # 2/2/2
    Balancer.set_status(lb.get(1), False)
    one, two = lb.get(1), lb.get(2)
    report = lb.load([
        spec(1, "pstn=8;transc=2", description="bigger"),  # same place: kept
        spec(2, "pstn=4", uri="sip:198.51.100.2"),  # moved: a new destination
        spec(4, "pstn=4"),  # new; 3 is gone
    ])
    assert (report.kept, report.replaced, report.added, report.removed) == ([1], [2], [4], [3])
    assert lb.get(1) is one and one.load == {"pstn": 2, "transc": 0}
    assert one.caps == {"pstn": 8, "transc": 2} and one.description == "bigger"
    assert not one.enabled  # its state is kept too
    assert lb.get(2) is not two and lb.get(2).load == {"pstn": 0}
    # the calls on the old objects end without touching the new ones
    for s in sessions:
        s.release()
    assert one.load["pstn"] == 0 and lb.get(2).load["pstn"] == 0 and two.load["pstn"] == 0
    assert [d.id for d in lb] == [1, 2, 4] and set(lb.groups) == {1}
    with pytest.raises(LoadBalancerError, match="used twice"):
        lb.load([spec(1, "pstn=1"), spec(1, "pstn=2")])


# ------------------------------------------------------------------ probing state
def test_probing_thresholds_disable_and_enable():
    lb = Balancer([spec(1, "pstn=1", probe_mode=2), spec(2, "pstn=1", probe_mode=1),
                   spec(3, "pstn=1", probe_mode=0)])
    always, when_down, never = lb.get(1), lb.get(2), lb.get(3)
    assert [Balancer.needs_probe(d) for d in lb] == [True, False, False]
    kw = {"failures_to_disable": 2, "successes_to_enable": 2}
    assert Balancer.probed(always, False, 408, **kw) is None and always.enabled
    assert Balancer.probed(always, True, 200, **kw) is None  # a success resets the count
    assert Balancer.probed(always, False, 408, **kw) is None
    assert Balancer.probed(always, False, 408, **kw) == "disabled"
    assert always.disabled == BY_PROBING and always.last_probe == 408
    assert Balancer.probed(always, True, 200, **kw) is None and not always.enabled
    assert Balancer.probed(always, True, 200, **kw) == "enabled" and always.enabled
    # probe_mode 1: probing never disables; lb_disable_dst does, probing enables again
    assert Balancer.probed(when_down, False, 408, **kw) is None and when_down.enabled
    assert Balancer.disable_by_script(when_down) and when_down.disabled == BY_SCRIPT
    assert Balancer.needs_probe(when_down)
    Balancer.probed(when_down, True, 200, **kw)
    assert Balancer.probed(when_down, True, 200, **kw) == "enabled"
    # the operator's "off" is not undone by probes, and is not probed
    Balancer.set_status(always, False)
    assert always.disabled == BY_OPERATOR and not Balancer.needs_probe(always)
    assert not Balancer.needs_probe(never)


# ------------------------------------------------------------------ configuration
def test_config_toml_destinations_and_defaults():
    cfg = LoadBalancerConfig.model_validate({
        "destinations": [
            {"dst_uri": "sip:10.0.0.1", "resources": "pstn=2", "group_id": 1},
            {"id": 7, "dst_uri": "sip:10.0.0.2", "resources": {"pstn": 3}, "probe_mode": 2},
        ],
        "probing_reply_codes": "200;501;403",
        "route_invites": {"group": 1, "resources": "pstn"},
    })
    specs = cfg.destination_specs()
    assert [(s.id, s.resources) for s in specs] == [(1, (("pstn", 2),)), (7, (("pstn", 3),))]
    assert cfg.alive_codes == {200, 501, 403}
    assert cfg.route_invites.failover_statuses() >= {408, 500, 503, 599}
    assert 404 not in cfg.route_invites.failover_statuses()
    assert LoadBalancerConfig().destination_specs() is None  # the table then
    assert LoadBalancerConfig().probing_interval == 30.0


@pytest.mark.parametrize("section, message", [
    ({"destinations": [{"dst_uri": "sip:a", "resources": "pstn"}]}, "no capacity"),
    ({"destinations": [{"dst_uri": "tel:+1", "resources": "pstn=1"}]}, "must be a sip"),
    ({"destinations": [{"id": 1, "dst_uri": "sip:a", "resources": "p=1"},
                       {"id": 1, "dst_uri": "sip:b", "resources": "p=1"}]}, "used twice"),
    ({"probing_method": "INVITE"}, "non-INVITE"),
    ({"probing_reply_codes": "200;ok"}, "status codes"),
    ({"route_invites": {"group": 1, "resources": "pstn", "flags": "q"}}, "flag 'q'"),
    ({"route_invites": {"group": 1, "resources": "pstn", "failover_on": ["2xx"]}}, "final"),
    ({"probing_intervall": 3}, "Extra inputs"),
])
def test_config_errors_say_what_is_wrong(section, message):
    with pytest.raises(ValidationError, match=message):
        LoadBalancerConfig.model_validate(section)


def test_failover_codes():
    assert codes_of("5xx") == set(range(500, 600)) and codes_of(408) == {408}
    with pytest.raises(ValueError):
        codes_of("200")
    assert RouteInvites(group=1, resources="pstn", failover_on=[486]).failover_statuses() == {486}
