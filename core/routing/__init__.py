"""Routing: the route stages, their contexts and actions, and the script loader."""

from sipline.routing.actions import DROP, Action, Drop, Redirect, Reply

__all__ = ["DROP", "Action", "Drop", "Redirect", "Reply"]
