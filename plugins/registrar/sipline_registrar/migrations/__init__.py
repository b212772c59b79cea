"""The registrar's Alembic revisions (branch ``registrar``).

The entry point ``registrar`` in the group ``sipline.migrations`` names this
package; its folder is the branch's version location.
"""
