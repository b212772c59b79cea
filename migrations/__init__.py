"""The Alembic environment of sipline (installed as ``sipline.migrations``).

The core owns the root revision; each plugin ships its own revisions in a branch
labelled with the plugin's name, whose first revision depends on the core root,
and points at their folder with an entry point in the group ``sipline.migrations``.
"""
