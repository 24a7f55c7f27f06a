"""MultiModalGen backend: multimodal registration and segmentation on a contrast-invariant 3D encoder.

The package never imports Slicer or Qt; heavy modules (torch engines) are imported lazily by their users.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
