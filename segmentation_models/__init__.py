"""segmentation_models for Keras 3 (placeholder; the foundation fills this in)."""
from ._version import __version__
