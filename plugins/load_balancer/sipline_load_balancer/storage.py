"""Reading the ``load_balancer`` table (at startup and for ``lb_reload``, never per call).

Blocking SQL: the plugin calls :func:`read_destinations` before the server listens, and
from ``lb_reload`` in a worker thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from sipline_load_balancer.destinations import DestinationSpec, LoadBalancerError
from sipline_load_balancer.models import load_balancer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger("sipline.plugin.load_balancer")


def read_destinations(engine: Engine) -> tuple[list[DestinationSpec], list[str]]:
    """Every valid row as a :class:`DestinationSpec`, and one message per invalid row
    (skipped: one bad row must not take the others down)."""
    specs: list[DestinationSpec] = []
    errors: list[str] = []
    with engine.connect() as conn:
        rows = conn.execute(select(load_balancer).order_by(load_balancer.c.id)).mappings().all()
    for row in rows:
        try:
            specs.append(DestinationSpec.build(
                id=row["id"], group_id=row["group_id"], dst_uri=row["dst_uri"],
                resources=row["resources"], probe_mode=row["probe_mode"],
                attrs=row["attrs"], description=row["description"],
            ))
        except LoadBalancerError as exc:
            errors.append(f"load_balancer table: {exc} (row skipped)")
    return specs, errors
