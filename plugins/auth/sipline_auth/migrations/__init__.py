"""Alembic revisions of the auth plugin (branch ``auth``); sipline.db finds this folder
through the ``sipline.migrations`` entry point ``auth``."""
