"""Finding the annotated slices in a painted label map, and validating the painting.

Convention (the same as the benchmark's tool contract and Slicer's Segment Editor use): the annotation is a label
map `(I, J, K)` on the image grid, 0 = not painted, `l > 0` = painted with label `l`. Along a slice axis, **every
slice that holds any painted voxel is fully annotated**: its painted voxels are their label, its other voxels are
annotated background. All other slices are unknown. Several slice axes may be annotated at once (e.g. a few axial
and one coronal slice); a voxel is *known* when it lies on an annotated slice of any of them.

The default axis is the one with the coarsest spacing (when it is > 1.2x the finest), else the index axis closest to
superior-inferior (from the affine's direction cosines). When the painting lies in clearly fewer slices along another
axis than along the default one, that axis is taken instead and the choice is reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import direction_from_affine, spacing_from_affine

#: The coarsest spacing must exceed the finest by this factor for "coarsest" to decide the default axis.
ANISOTROPY_RATIO = 1.2


@dataclasses.dataclass(frozen=True)
class AnnotatedSlices:
    """The annotated slices along one index axis (0 = i, 1 = j, 2 = k), sorted, as voxel indices."""

    axis: int
    indices: tuple[int, ...]


@dataclasses.dataclass
class Annotations:
    """A validated annotation: the painting, its labels and the annotated slices per axis.

    Attributes:
        array: `(I, J, K)` integer label map of the painting (0 = not painted / annotated background).
        labels: the label values to segment, sorted (1..255 typically).
        slices: annotated slices, one entry per annotated axis; `slices[0]` is the primary axis (shape prior).
        notes: human-readable remarks on choices made (axis chosen, resampling done), reported to the user.
    """

    array: np.ndarray
    labels: tuple[int, ...]
    slices: list[AnnotatedSlices]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def primary_axis(self) -> int:
        return self.slices[0].axis

    def known_mask(self) -> np.ndarray:
        """Boolean `(I, J, K)`: True on every voxel of an annotated slice (of any axis)."""
        known = np.zeros(self.array.shape, bool)
        for entry in self.slices:
            index = [slice(None)] * 3
            index[entry.axis] = list(entry.indices)
            known[tuple(index)] = True
        return known

    def class_map(self) -> np.ndarray:
        """`(I, J, K)` int64: class index 0 = background, 1..L = `labels[c-1]`, on known voxels (else -1)."""
        classes = np.full(self.array.shape, -1, np.int64)
        known = self.known_mask()
        classes[known] = 0
        for c, value in enumerate(self.labels, start=1):
            classes[known & (self.array == value)] = c
        return classes


def default_axis(affine: np.ndarray) -> int:
    """Index axis with the coarsest spacing (if anisotropic), else the one closest to superior-inferior (RAS S)."""
    spacing = spacing_from_affine(affine)
    if spacing.max() > ANISOTROPY_RATIO * spacing.min():
        return int(np.argmax(spacing))
    return int(np.argmax(np.abs(direction_from_affine(affine)[2, :])))


def painted_slices(painted: np.ndarray, axis: int) -> np.ndarray:
    """Indices of the slices along `axis` that hold any non-zero voxel of the `(I, J, K)` array."""
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(np.asarray(painted).any(axis=other))


def _choose_axes(painted: np.ndarray, affine: np.ndarray, notes: list[str]) -> list[int]:
    """Automatic axis choice: the default axis unless another axis holds the painting in far fewer slices."""
    axis = default_axis(affine)
    counts = [len(painted_slices(painted, a)) for a in range(3)]
    best = int(np.argmin(counts))
    if counts[best] * 2 <= counts[axis] and best != axis:
        notes.append(f"the painting lies in {counts[best]} slices along axis {best} but {counts[axis]} along the "
                     f"default axis {axis}: axis {best} is used as the slice axis (pass axis= to force one)")
        return [best]
    return [axis]


def _as_axes(axis) -> list[int] | None:
    if axis is None:
        return None
    axes = [axis] if np.isscalar(axis) else list(axis)
    out: list[int] = []
    for a in axes:
        if int(a) not in (0, 1, 2) or float(a) != int(a):
            raise UserInputError("invalid slice axis", expected="0 (i), 1 (j) or 2 (k)", got=repr(a),
                                 fix="give the index axis of the annotated slices, or leave it out to detect it")
        if int(a) not in out:
            out.append(int(a))
    if not out:
        raise UserInputError("no slice axis given", expected="at least one of 0, 1, 2", got=repr(axis))
    return out


def find_annotations(annotation: np.ndarray, affine: np.ndarray, *, axis=None, labels=None) -> Annotations:
    """Validate a painting and find its annotated slices.

    Args:
        annotation: `(I, J, K)` integer label map on the image grid (0 = unpainted).
        affine: the image's 4x4 voxel -> RAS affine (decides the default axis).
        axis: None (detect), an index axis 0/1/2, or a list of axes annotated at once.
        labels: label values to segment (None = every painted value). A painted value outside this set is an error.

    Raises:
        UserInputError: nothing painted; labels outside the requested set; a label painted on every slice of an
        axis (nothing left to predict); a requested label never painted.
    """
    from multimodalgen.volume import check_label_array

    array = check_label_array(np.asarray(annotation), "annotation")
    if array.ndim != 3:
        raise UserInputError("the annotation must be a 3D label map", expected="shape (I, J, K)",
                             got=f"shape {array.shape}", fix="give one label map on the image grid")
    painted = array > 0
    if not painted.any():
        raise UserInputError("the annotation holds no painted voxel", expected="at least one slice painted with a "
                             "label > 0", got="an all-zero label map",
                             fix="paint the structure on one or more slices (e.g. with Slicer's Segment Editor)")
    present = tuple(int(v) for v in np.unique(array[painted]))
    if labels is None:
        wanted = present
    else:
        wanted = tuple(sorted({int(v) for v in labels}))
        if any(v <= 0 for v in wanted):
            raise UserInputError("invalid label values", expected="labels > 0", got=str(list(wanted)))
        extra = sorted(set(present) - set(wanted))
        if extra:
            raise UserInputError("the annotation holds labels that were not requested",
                                 expected=f"only labels {list(wanted)}", got=f"also labels {extra}",
                                 fix="add them to the requested labels, or erase them from the painting")
        missing = sorted(set(wanted) - set(present))
        if missing:
            raise UserInputError("requested labels are never painted", expected=f"labels {list(wanted)} painted",
                                 got=f"labels {list(present)} painted",
                                 fix="paint every requested label on at least one slice, or drop it from the request")
    notes: list[str] = []
    axes = _as_axes(axis) or _choose_axes(painted, affine, notes)
    slices = [AnnotatedSlices(a, tuple(int(i) for i in painted_slices(painted, a))) for a in axes]
    slices = [s for s in slices if s.indices]
    if len(axes) > 1:
        # a painted voxel must lie on an annotated slice of some axis; with several axes, each axis's slices are
        # the ones that hold painting not explained by the other axes' slices
        slices = _split_axes(painted, axes)
    for entry in slices:
        n_slices = array.shape[entry.axis]
        for value in wanted:
            per_slice = painted_slices(array == value, entry.axis)
            if len(per_slice) == n_slices:
                raise UserInputError(f"label {value} is painted on every slice along axis {entry.axis}",
                                     expected="a few painted slices (the rest is predicted)",
                                     got=f"{n_slices} of {n_slices} slices painted",
                                     fix="this looks like a full segmentation: use it as a support label "
                                         "(--support-label), or choose the slice axis with --axis")
    return Annotations(array, wanted, slices, notes)


def _split_axes(painted: np.ndarray, axes: list[int]) -> list[AnnotatedSlices]:
    """Assign painted voxels to slices of several axes: greedily take the slice (of any axis) covering the most
    still-unexplained painted voxels, until every painted voxel lies on a chosen slice."""
    remaining = painted.copy()
    chosen: dict[int, set[int]] = {a: set() for a in axes}
    while remaining.any():
        best = (-1, 0, 0)
        for a in axes:
            other = tuple(x for x in range(3) if x != a)
            counts = remaining.sum(axis=other)
            i = int(np.argmax(counts))
            if counts[i] > best[0]:
                best = (int(counts[i]), a, i)
        _, a, i = best
        chosen[a].add(i)
        index = [slice(None)] * 3
        index[a] = i
        remaining[tuple(index)] = False
    out = [AnnotatedSlices(a, tuple(sorted(chosen[a]))) for a in axes if chosen[a]]
    out.sort(key=lambda s: -len(s.indices))
    return out
