"""ewspipe: monthly conflict early-warning forecasts, from data to published release."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ewspipe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
