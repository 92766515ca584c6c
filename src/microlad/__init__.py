"""microlad: 2D micrographs to statistically equivalent 3D microstructures."""
from microlad._version import __version__
from microlad.errors import MicroladError

__all__ = ["__version__", "MicroladError"]
