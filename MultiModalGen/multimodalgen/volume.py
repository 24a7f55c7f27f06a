"""The backend's volume model: one place owns geometry.

A `Volume` is a numpy array of shape `(I, J, K)` (scalar image or label map) or `(C, I, J, K)` (C channels, e.g.
encoder features or several modalities on one grid), plus a 4x4 affine mapping voxel indices `(i, j, k)` to
RAS millimetres (nibabel convention: ``ras = affine @ [i, j, k, 1]``). LPS only appears at the I/O boundary
(`multimodalgen.io.sitk_bridge`). Geometry helpers here never touch files.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from multimodalgen.errors import UserInputError

#: Modality names the backend knows. Others are accepted by I/O but rejected by engines that need to know.
KNOWN_MODALITIES = ("T1", "T2", "PD", "FLAIR", "CT", "PET", "EPI", "MR", "LABEL", "FEATURES")

#: Tolerance (mm, and dimensionless for direction cosines) for "same grid" checks.
GRID_TOLERANCE = 1e-3


@dataclasses.dataclass
class Volume:
    """An image, label map or multi-channel map on a voxel grid.

    Attributes:
        array: `(I, J, K)` or `(C, I, J, K)` numpy array (any numeric dtype).
        affine: 4x4 float64, voxel `(i, j, k, 1)` -> RAS mm.
        modality: e.g. "T1", "CT", "LABEL", or None when unknown.
        metadata: free-form dict (source path, segment names, ...); copied, never shared.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim not in (3, 4):
            raise UserInputError(
                "a volume must be 3D", expected="an array of shape (I,J,K) or (C,I,J,K)",
                got=f"shape {tuple(self.array.shape)}",
                fix="give a 3D volume (2D images and time series are not supported)")
        if min(self.array.shape) == 0:
            raise UserInputError("the volume is empty", expected="every dimension >= 1",
                                 got=f"shape {tuple(self.array.shape)}", fix="check the input file")
        validate_affine(self.affine)
        self.metadata = dict(self.metadata)

    # -- shape and geometry -------------------------------------------------------------------------------
    @property
    def shape3d(self) -> tuple[int, int, int]:
        """Spatial shape `(I, J, K)`."""
        return tuple(int(s) for s in self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        """1 for a scalar volume, C for `(C, I, J, K)`."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[0])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k (float64, shape (3,))."""
        return spacing_from_affine(self.affine)

    @property
    def orientation(self) -> str:
        """Three-letter orientation code of the i, j, k axes, e.g. "RAS" or "LPS" (nibabel convention)."""
        return orientation_code(self.affine)

    def with_array(self, array: np.ndarray, modality: str | None = "__same__") -> "Volume":
        """A new Volume with the same affine and metadata and another array on the same spatial grid."""
        array = np.asarray(array)
        if tuple(array.shape[-3:]) != self.shape3d:
            raise UserInputError("new array is on another grid", expected=f"spatial shape {self.shape3d}",
                                 got=f"shape {tuple(array.shape)}", fix="resample it to this grid first")
        return Volume(array, self.affine.copy(), self.modality if modality == "__same__" else modality,
                      dict(self.metadata))

    def channel(self, c: int) -> "Volume":
        """Channel `c` of a `(C, I, J, K)` volume as a scalar Volume."""
        if self.array.ndim == 3:
            if c != 0:
                raise UserInputError("a scalar volume has a single channel", expected="channel 0", got=str(c))
            return self
        return Volume(self.array[c], self.affine.copy(), self.modality, dict(self.metadata))

    def world_coordinates(self) -> np.ndarray:
        """RAS mm coordinates of every voxel centre: float64 array `(3, I, J, K)`."""
        return grid_world_coordinates(self.shape3d, self.affine)


# -- pure geometry functions ----------------------------------------------------------------------------------
def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each index axis: norms of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def direction_from_affine(affine: np.ndarray) -> np.ndarray:
    """3x3 direction cosines (columns = unit vectors of the i, j, k axes in RAS)."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return a / spacing_from_affine(affine)[None, :]


def validate_affine(affine: np.ndarray, tolerance: float = 1e-3) -> None:
    """Raise `UserInputError` unless `affine` is a finite 4x4 with non-zero, orthogonal voxel axes."""
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise UserInputError("invalid voxel-to-world matrix", expected="a finite 4x4 affine",
                             got=f"shape {affine.shape}", fix="repair the image header")
    spacing = spacing_from_affine(affine)
    if np.any(spacing < 1e-6):
        raise UserInputError("the voxel-to-world matrix has a zero-length axis", expected="spacing > 0",
                             got=f"spacing {np.round(spacing, 6).tolist()}", fix="repair the image header")
    direction = affine[:3, :3] / spacing[None, :]
    gram = direction.T @ direction
    off = np.abs(gram - np.eye(3)).max()
    if off > tolerance:
        raise UserInputError(
            "the image axes are not orthogonal (sheared grid)",
            expected="orthogonal direction cosines",
            got=f"max |cos| between axes {off:.4f}",
            fix="resample the image onto an orthogonal grid (e.g. with Slicer's Resample Scalar Volume)")


def orientation_code(affine: np.ndarray) -> str:
    """Orientation code of the voxel axes ("RAS", "LPS", "LIA", ...), by the dominant world axis of each."""
    labels = (("L", "R"), ("P", "A"), ("I", "S"))
    direction = direction_from_affine(affine)
    code = []
    for col in range(3):
        world_axis = int(np.argmax(np.abs(direction[:, col])))
        code.append(labels[world_axis][1 if direction[world_axis, col] > 0 else 0])
    return "".join(code)


def grid_world_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """RAS mm of all voxel centres of a grid: `(3, I, J, K)` float64."""
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    return np.einsum("ab,bijk->aijk", affine[:3, :3], idx) + affine[:3, 3, None, None, None]


def other_grid_error(message: str, reference: Volume, volume: Volume, fix: str) -> UserInputError:
    """The one-line error for a volume that is not on the reference grid (expected/got: shape and spacing)."""
    return UserInputError(message, expected=f"shape {reference.shape3d}, spacing "
                          f"{np.round(reference.spacing, 4).tolist()} mm",
                          got=f"shape {volume.shape3d}, spacing {np.round(volume.spacing, 4).tolist()} mm", fix=fix)


def same_grid(a: Volume | tuple, b: Volume | tuple, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when two grids (Volumes or `(shape, affine)` pairs) have the same shape and affine within tolerance."""
    shape_a, aff_a = (a.shape3d, a.affine) if isinstance(a, Volume) else (tuple(a[0]), np.asarray(a[1]))
    shape_b, aff_b = (b.shape3d, b.affine) if isinstance(b, Volume) else (tuple(b[0]), np.asarray(b[1]))
    return tuple(shape_a) == tuple(shape_b) and bool(np.allclose(aff_a, aff_b, atol=tolerance, rtol=0))


def require_same_grid(reference: Volume, other: Volume, what: str) -> None:
    """Raise a clear `UserInputError` when `other` is not on `reference`'s grid (no silent resampling)."""
    if not same_grid(reference, other):
        raise UserInputError(
            f"{what} is not on the reference image's grid",
            expected=f"shape {reference.shape3d}, spacing {np.round(reference.spacing, 4).tolist()} mm",
            got=f"shape {other.shape3d}, spacing {np.round(other.spacing, 4).tolist()} mm",
            fix="resample it explicitly (multimodalgen convert --reference, or the engine's --resample flag)")


def check_finite(volume: Volume, what: str = "image") -> None:
    """Raise when the array holds NaN or Inf values (they would poison every downstream computation)."""
    if np.issubdtype(volume.array.dtype, np.floating) and not np.all(np.isfinite(volume.array)):
        bad = int(np.size(volume.array) - np.count_nonzero(np.isfinite(volume.array)))
        raise UserInputError(f"the {what} contains NaN or Inf values", expected="finite intensities",
                             got=f"{bad} non-finite voxels",
                             fix="replace them (e.g. with 0) or pass --fill-nonfinite to the command")


def check_not_constant(volume: Volume, what: str = "image") -> None:
    """Raise when every voxel has the same value (no structure to register or segment)."""
    arr = volume.array
    if arr.size and float(arr.max()) == float(arr.min()):
        raise UserInputError(f"the {what} is constant", expected="an image with contrast",
                             got=f"every voxel = {float(arr.min()):g}", fix="check that the right file was given")


def check_label_array(array: np.ndarray, what: str = "label map") -> np.ndarray:
    """Validate a label array (integer values >= 0) and return it as uint8 when it fits, else int32, else (integer
    input above 2^31 - 1) int64/uint64: values are kept exactly or refused, never narrowed."""
    arr = np.asarray(array)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise UserInputError(f"the {what} contains NaN/Inf", expected="integer labels", got="non-finite values",
                                 fix="give a label map (segmentation), not an image")
        frac = np.abs(arr - np.round(arr))
        if frac.max() > 1e-3:
            n = int(np.count_nonzero(frac > 1e-3))
            raise UserInputError(f"the {what} has non-integer values", expected="integer labels",
                                 got=f"{n} voxels with fractional values (e.g. {float(arr[frac > 1e-3][0]):g})",
                                 fix="give a label map (segmentation), not an image or probability map")
        arr = np.round(arr)
    if arr.size and arr.min() < 0:
        raise UserInputError(f"the {what} has negative labels", expected="labels >= 0",
                             got=f"minimum {arr.min()}", fix="relabel the segmentation")
    top = arr.max() if arr.size else 0
    if top < 256:
        return arr.astype(np.uint8)
    if top <= np.iinfo(np.int32).max:
        return arr.astype(np.int32)
    if np.issubdtype(arr.dtype, np.integer):  # values kept exactly, never narrowed
        return arr.astype(np.uint64 if top > np.iinfo(np.int64).max else np.int64)
    raise UserInputError(f"the {what} has label values above 2^31 stored as floating point",
                         expected="labels < 2147483648, or stored as integers", got=f"maximum {float(top):g}",
                         fix="relabel the segmentation with smaller values")


def crop_affine(affine: np.ndarray, start: tuple[int, int, int]) -> np.ndarray:
    """Affine of a sub-grid starting at voxel `start` (same spacing and orientation)."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return out


def describe(volume: Volume) -> dict[str, Any]:
    """A JSON-serialisable summary: shape, spacing, origin, orientation, value range and dtype."""
    arr = volume.array
    finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
    return {
        "shape": list(arr.shape),
        "channels": volume.n_channels,
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "origin_ras_mm": [round(float(v), 4) for v in volume.affine[:3, 3]],
        "orientation": volume.orientation,
        "direction_ras": np.round(direction_from_affine(volume.affine), 6).tolist(),
        "dtype": str(arr.dtype),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "nonfinite_voxels": int(arr.size - finite.size),
        "modality": volume.modality,
        "extent_mm": [round(float(s * n), 3) for s, n in zip(volume.spacing, volume.shape3d)],
    }
