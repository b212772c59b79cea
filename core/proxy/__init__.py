"""The proxy core (RFC 3261 §16): forwarding, Record-Route/Route, forking, response context."""

from sipline.proxy.core import Proxy
from sipline.proxy.nexthop import NextHop, resolve_target
from sipline.proxy.result import Relayed, RelayError

__all__ = ["NextHop", "Proxy", "RelayError", "Relayed", "resolve_target"]
