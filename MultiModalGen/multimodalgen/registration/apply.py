"""Verb `apply`: resample an image (or labels) through a saved ITK transform onto a reference grid (file level).

`transform.h5` maps reference (fixed) LPS points to moving LPS points (the resampling direction; see `contract.py`),
so `out(x) = moving(T(x))` for every voxel centre x of the reference grid: the same map `register` used to write
`warped.nii.gz`. With `inverse`, T^-1 is used (an `inverse_transform.h5` written by `register` is itself such a
transform; `inverse` inverts an affine exactly and a displacement field iteratively). Points that fall outside the
moving image get `fill`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext


def read_transform(path):
    """A SimpleITK transform from an ITK transform file (.h5, .tfm, .txt); one-line error for anything else."""
    import SimpleITK as sitk

    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise UserInputError(f"cannot read the transform {path}", expected="an ITK transform file (.h5, .tfm) such "
                             "as transform.h5 written by `multimodalgen register`",
                             got=str(exc).strip().splitlines()[-1][:120], fix="give the transform file") from None


def invert_transform(transform):
    """T^-1 of an affine, a displacement field or a composite of them (fields inverted iteratively by ITK)."""
    import SimpleITK as sitk

    def invert_one(tx):
        kind = tx.GetName()
        if kind == "DisplacementFieldTransform":
            field = sitk.DisplacementFieldTransform(tx).GetDisplacementField()
            inverse = sitk.InvertDisplacementField(field, maximumNumberOfIterations=50,
                                                   maxErrorToleranceThreshold=0.01,
                                                   meanErrorToleranceThreshold=0.0001,
                                                   enforceBoundaryCondition=True)
            return sitk.DisplacementFieldTransform(sitk.Cast(inverse, sitk.sitkVectorFloat64))
        inverse = tx.GetInverse()
        return inverse

    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        parts = [composite.GetNthTransform(n) for n in range(composite.GetNumberOfTransforms())]
        return sitk.CompositeTransform([invert_one(t) for t in reversed(parts)])
    return invert_one(transform)


def apply_file(moving, transform, reference, *, out: Path, ctx: RunContext, labels: bool = False,
               fill: float = 0.0, inverse: bool = False) -> Result:
    """The `apply` verb: `moving` resampled through `transform` onto `reference`'s grid, written to `out`.

    Args:
        moving: image (or label map with `labels`) to resample.
        transform: ITK transform file mapping reference points to moving points (e.g. transform.h5).
        reference: image whose grid (size, spacing, origin, direction) the output takes.
        labels: nearest-neighbour resampling, integer values kept (else linear, float32).
        fill: value outside the moving image. inverse: apply T^-1 instead of T.
    """
    import SimpleITK as sitk

    from multimodalgen.io import read_label, read_volume, write_label, write_volume
    from multimodalgen.io.sitk_bridge import sitk_to_volume, volume_to_sitk

    t0 = time.perf_counter()
    tx = read_transform(transform)
    if inverse:
        tx = invert_transform(tx)
    source = read_label(moving) if labels else read_volume(moving, allow_channels=False)
    grid = read_volume(reference, allow_channels=True)
    ref_image = volume_to_sitk(grid.channel(0) if grid.n_channels > 1 else grid)
    moving_image = volume_to_sitk(source if labels else source.with_array(source.array.astype(np.float32)))
    t1 = time.perf_counter()
    ctx.progress.update("apply", 0.3, "resampling")
    warped = sitk.Resample(moving_image, ref_image, tx, sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
                           float(fill), moving_image.GetPixelID())
    result = sitk_to_volume(warped, "LABEL" if labels else source.modality, {"warped_from": str(moving)})
    t2 = time.perf_counter()
    (write_label if labels else write_volume)(result, out)
    ctx.progress.update("apply", 1.0, "done")
    return Result({"warped": Path(out)}, {"shape": list(result.shape3d), "inverse": bool(inverse),
                                          "fill": float(fill)},
                  {"read": t1 - t0, "resample": t2 - t1, "write": time.perf_counter() - t2})
