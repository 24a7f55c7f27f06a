"""Volume and label-map I/O: NIfTI, NRRD, MHA, DICOM series folders and Slicer `.seg.nrrd`.

LPS <-> RAS conversion happens here (in `sitk_bridge`) and nowhere else. Writes are atomic.
"""

from multimodalgen.io.readers import SUPPORTED_SUFFIXES, read_label, read_volume
from multimodalgen.io.writers import (WRITABLE_SUFFIXES, atomic_path, labels_sidecar, write_json, write_label,
                                     write_named_labels, write_volume)

__all__ = ["read_volume", "read_label", "write_volume", "write_label", "write_named_labels", "write_json",
           "atomic_path", "labels_sidecar", "SUPPORTED_SUFFIXES", "WRITABLE_SUFFIXES"]
