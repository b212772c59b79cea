"""sipline-dialog: dialog tracking for sipline (OpenSIPS ``dialog``).

Other plugins reach it with :func:`api`::

    from sipline_dialog import api

    dialogs = api(server)          # in your startup hook
    dialogs.subscribe("ended", on_call_end)
"""

from sipline_dialog.dialog import (
    CONFIRMED,
    CREATED,
    EARLY,
    ENDED,
    EVENTS,
    EXPIRED,
    FAILED,
    TERMINATED,
    Dialog,
    DialogState,
)
from sipline_dialog.plugin import DialogApi, DialogPlugin, api
from sipline_dialog.profiles import ProfileError
from sipline_dialog.table import DialogError, DialogTable

__all__ = [
    "CONFIRMED", "CREATED", "EARLY", "ENDED", "EVENTS", "EXPIRED", "FAILED", "TERMINATED",
    "Dialog", "DialogApi", "DialogError", "DialogPlugin", "DialogState", "DialogTable",
    "ProfileError", "api",
]
