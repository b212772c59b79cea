"""The proxy core (RFC 3261 §16): forwarding, Record-Route/Route, forking, response context."""

from sipline.proxy.core import Proxy
from sipline.proxy.nexthop import NextHop, resolve_target
from sipline.proxy.result import Relayed, RelayError
from sipline.proxy.uac import LocalRequestError, Uac, build_request

__all__ = [
    "LocalRequestError", "NextHop", "Proxy", "RelayError", "Relayed", "Uac", "build_request",
    "resolve_target",
]
