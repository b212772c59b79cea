"""sipline-load-balancer: call load balancing for sipline (OpenSIPS ``load_balancer``).

Routing scripts use ``ctx.lb`` (:class:`~sipline_load_balancer.plugin.LoadBalancerApi`);
the pure parts (destinations, selection) are importable without a server::

    from sipline_load_balancer import Balancer, DestinationSpec
"""

from sipline_load_balancer.balancer import (
    FAILURES,
    Balancer,
    LbError,
    LbResult,
    Session,
)
from sipline_load_balancer.destinations import (
    Destination,
    DestinationSpec,
    LoadBalancerError,
    parse_requested,
    parse_resources,
)
from sipline_load_balancer.plugin import LoadBalancerApi, LoadBalancerPlugin

__all__ = [
    "FAILURES", "Balancer", "Destination", "DestinationSpec", "LbError", "LbResult",
    "LoadBalancerApi", "LoadBalancerError", "LoadBalancerPlugin", "Session",
    "parse_requested", "parse_resources",
]
