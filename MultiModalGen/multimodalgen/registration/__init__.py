"""Multimodal registration: rigid -> affine -> ConvexAdam deformable on MIND-SSC (+ encoder) features.

Public API (imported lazily so that `import multimodalgen.registration` stays light):

* `register_volumes(fixed, moving, *, mode, preset, fixed_mask, moving_mask, moving_labels, device, progress)`
  -> `RegistrationResult` (fixed -> moving, see `contract.py`);
* `register_files(fixed, moving, out_dir, *, ctx, moving_labels, fixed_labels, fixed_mask, moving_mask, mode,
  preset, ...)` -> `verbs.Result`, the `register` verb: writes transform.h5, displacement.nii.gz, warped.nii.gz,
  warped_labels.nii.gz, report.json and overlay.png.

Modules (one responsibility each): `contract` (coordinate contract, `RegistrationResult`), `grid` (working grids,
image preparation), `features` (MIND-SSC, optional encoder features), `initial` (moments / centres / none),
`linear` (rigid, affine; MIND feature SSD or mutual information), `mutual_information` (Parzen MI), `mi_check`
(MI check of the linear result, MI fallback for pairs like PET vs T1), `convexadam` (correlation volume, coupled
convex, inverse consistency, Adam, scaling and squaring), `similarity`, `presets` (fast / accurate), `engine`
(array and Volume level), `export` (warping, ITK transform, displacement, Jacobian), `overlay` (overlay.png), `api`
(file level), `cli` (`multimodalgen register`).
"""

from __future__ import annotations

__all__ = ["register_volumes", "register_arrays", "register_files", "RegistrationResult"]


def __getattr__(name):
    if name in ("register_volumes", "register_arrays"):
        from multimodalgen.registration import engine

        return getattr(engine, name)
    if name == "register_files":
        from multimodalgen.registration.api import register_files

        return register_files
    if name == "RegistrationResult":
        from multimodalgen.registration.contract import RegistrationResult

        return RegistrationResult
    raise AttributeError(f"module 'multimodalgen.registration' has no attribute {name!r}")
