"""cortexnet: large sparse excitatory/inhibitory recurrent networks (Fruengel & Oberlaender 2025)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cortexnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
