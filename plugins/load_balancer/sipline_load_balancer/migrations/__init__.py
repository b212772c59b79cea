"""The load balancer's Alembic revisions (branch ``load_balancer``).

The entry point ``load_balancer`` in the group ``sipline.migrations`` names this
package; its folder is the branch's version location.
"""
