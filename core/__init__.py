"""sipline: a SIP server built as a pluggy plugin ecosystem."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sipline")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
