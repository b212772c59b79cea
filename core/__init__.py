"""sipline: a SIP server built as a pluggy plugin ecosystem."""

from importlib.metadata import PackageNotFoundError, version

from sipline._build import check_in_place_build

try:
    __version__ = version("sipline")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Before any compiled module is imported: an in-place (editable) compiled build older than its
# sources must not shadow them (see sipline/_build.py).
check_in_place_build()

__all__ = ["__version__"]
