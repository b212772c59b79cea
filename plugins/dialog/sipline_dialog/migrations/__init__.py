"""The dialog plugin's Alembic revisions (branch ``dialog``).

The entry point ``dialog`` in the group ``sipline.migrations`` names this package;
its folder is the branch's version location.
"""
