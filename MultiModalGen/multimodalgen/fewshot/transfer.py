"""Applying a saved task to an image: head + the spatial prior stored in the task, aligned to the image.

A task saved from a session (`task.save_task`) holds, besides the head, the session's result as a **spatial prior**
(a label crop with its voxel -> RAS affine) and a **reference image** (the session's first channel at <= 2 mm),
both in the space of the image the task was trained on. To apply it to an image:
1. **checks** (`check_fit`): same number of channels and modalities, voxel size within `SPACING_RANGE` of the
   task's, the reference's and the image's intensity ranges comparable: otherwise a `UserInputError`;
2. **alignment**: on the same grid and content as the task's image nothing moves; otherwise the reference image is
   registered (affine by default, `multimodalgen.registration`) onto the image and the prior carried along;
   `align="none"` uses the image headers alone (e.g. both images in one template space);
3. **fusion**: per label `logit = head_weight * head_logodds - signed_distance(prior) / prior_tau_mm`, evaluated in
   the prior's bounding box grown by `margin_mm`; decision, components touching the prior kept, holes filled;
4. **warnings** (in the report's `notes`, never silent): a result volume outside 0.5-2x the task's, or a head that
   agrees with the aligned prior (Dice of the head alone vs the prior) less than `AGREEMENT_DROP` x as well as it
   did on the task's own image (stored at saving, `head_prior_agreement`).
Arrays are `(I, J, K)` on the image grid; distances in mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from multimodalgen.errors import UserInputError

#: Allowed ratio of the image's voxel size to the task image's, per axis.
SPACING_RANGE = (1.0 / 3.0, 3.0)
#: A head/prior agreement below this fraction of the one on the task's own image flags the result.
AGREEMENT_DROP = 0.5
ALIGN_MODES = ("auto", "affine", "deformable", "none")


def check_fit(task, channels: list) -> None:
    """Refuse an image the task cannot describe: channel count/modalities, voxel size far from the task's."""
    if len(channels) != len(task.modalities):
        raise UserInputError("the images do not match the task", expected=f"{len(task.modalities)} channel(s) "
                             f"({task.modalities})", got=f"{len(channels)} channel(s)",
                             fix="give the same modalities, in the same order, as when the task was saved")
    for n, (v, m) in enumerate(zip(channels, task.modalities)):
        if v.modality and m and v.modality != m:
            raise UserInputError(f"image channel {n + 1} is {v.modality} but the task was trained on {m}",
                                 expected=f"modalities {task.modalities}",
                                 got=f"{[c.modality for c in channels]}",
                                 fix="give the same modalities as the task, or paint this image (new task)")
    spacing = task.prior.get("image_spacing") if task.prior else None
    if spacing is not None:
        ratio = np.asarray(channels[0].spacing, np.float64) / np.asarray(spacing, np.float64)
        if ratio.min() < SPACING_RANGE[0] or ratio.max() > SPACING_RANGE[1]:
            raise UserInputError("the image's voxel size is far outside the task's",
                                 expected=f"voxel size within {SPACING_RANGE[0]:.2f}-{SPACING_RANGE[1]:.0f}x of "
                                          f"{np.round(spacing, 3).tolist()} mm",
                                 got=f"{np.round(channels[0].spacing, 3).tolist()} mm",
                                 fix="resample the image to a similar resolution, or paint it (new task)")


def _same_image(task, reference) -> bool:
    from multimodalgen.fewshot.features import content_hash

    return bool(task.prior) and task.prior.get("image_hash") == content_hash([reference.array], reference.affine)


def align_prior(task, reference, align: str = "auto", device="cpu", progress=None) -> tuple[np.ndarray, str]:
    """The task's prior label map carried onto `reference`'s grid `(I, J, K)`, and how it was carried."""
    from multimodalgen.resample import resample_array

    prior = task.prior
    if align not in ALIGN_MODES:
        raise UserInputError("invalid alignment", expected=" or ".join(ALIGN_MODES), got=repr(align))
    if align == "auto":
        align = "none" if _same_image(task, reference) else "affine"
    if align == "none":
        how = "image headers (no registration)"
        warped = resample_array(prior["labels"], prior["labels_affine"], reference.shape3d, reference.affine,
                                order="nearest")
        return warped, how
    from multimodalgen.registration import register_volumes
    from multimodalgen.registration.export import warp_volume
    from multimodalgen.volume import Volume

    moving = Volume(prior["reference"].astype(np.float32), prior["reference_affine"], task.modalities[0])
    labels = Volume(prior["labels"], prior["labels_affine"], "LABEL")
    result = register_volumes(reference, moving, mode=align, preset="fast", device=device, progress=progress)
    # the label crop is on its own grid: put it on the reference image's grid first, then warp
    from multimodalgen.resample import resample_like

    labels_on_moving = resample_like(labels, moving, "nearest")
    warped = warp_volume(result, labels_on_moving, order="nearest").array
    return warped, f"registration ({align}, fast) of the task's reference image"


def _signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    return (ndi.distance_transform_edt(~mask, sampling=spacing) -
            ndi.distance_transform_edt(mask, sampling=spacing)).astype(np.float32)


def fuse_with_prior(head_logodds_fn, prior_labels: np.ndarray, labels: tuple[int, ...], spacing, *,
                    head_weight: float, prior_tau_mm: float, margin_mm: float) -> tuple[np.ndarray, dict]:
    """Label map `(I, J, K)` from the aligned prior and the head, and per-label agreement figures.

    `head_logodds_fn(box)` returns the head's `(L, *box_shape)` log-odds (label vs background) on a voxel box.
    """
    spacing = np.asarray(spacing, np.float64)
    out = np.zeros(prior_labels.shape, np.uint8 if max(labels) < 256 else np.int32)
    fg = np.isin(prior_labels, labels)
    stats: dict = {}
    if not fg.any():
        return out, stats
    idx = np.argwhere(fg)
    grow = np.ceil(margin_mm / spacing).astype(int)
    lo = np.maximum(idx.min(0) - grow, 0)
    hi = np.minimum(idx.max(0) + 1 + grow, prior_labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    head = head_logodds_fn(((int(lo[0]), int(lo[1]), int(lo[2])), (int(hi[0]), int(hi[1]), int(hi[2]))))
    crop = prior_labels[box]
    logits = np.stack([head_weight * head[c] - _signed_distance(crop == v, spacing) / prior_tau_mm
                       for c, v in enumerate(labels)])
    from multimodalgen.fewshot.postprocess import decide, keep_connected_to

    classes = decide(logits)
    result = np.zeros(crop.shape, out.dtype)
    for c, value in enumerate(labels, start=1):
        seeds = crop == value
        mask = keep_connected_to(classes == c, seeds)
        mask = ndi.binary_fill_holes(mask) & (result == 0)
        result[mask] = value
        alone = head[c - 1] > 0
        denominator = int(alone.sum()) + int(seeds.sum())
        stats[int(value)] = {"prior_voxels": int(seeds.sum()), "result_voxels": int(mask.sum()),
                             "head_prior_dice": round(2.0 * int((alone & seeds).sum()) / denominator, 4)
                             if denominator else 1.0}
    out[box] = result
    return out, stats


def head_prior_agreement(head, source, result_labels: np.ndarray, labels, margin_mm: float = 10.0) -> dict:
    """{label: Dice of the head alone vs the result} on the result's bounding box grown by `margin_mm`: how well
    the head alone finds the structure on the task's own image (stored in the task, compared at application)."""
    from multimodalgen.fewshot.head import predict_logits

    def head_logodds(box):
        logits = predict_logits(head, source.features(box))
        return np.clip(logits[1:] - logits[:1], -6.0, 6.0)

    _, stats = fuse_with_prior(head_logodds, np.asarray(result_labels), tuple(labels), source.spacing,
                               head_weight=1.0, prior_tau_mm=1.5, margin_mm=margin_mm)
    return {str(k): v["head_prior_dice"] for k, v in stats.items()}


def warnings_for(stats: dict, task_voxels: dict, spacing, task_spacing, own_agreement: dict | None = None) -> list[str]:
    """Human-readable warnings: result volume far from the task's, head disagreeing with the prior."""
    notes = []
    voxel_ratio = float(np.prod(task_spacing) / np.prod(spacing)) if task_spacing is not None else 1.0
    for value, s in stats.items():
        expected = task_voxels.get(str(value), task_voxels.get(value))
        if expected:
            ratio = s["result_voxels"] / (expected * voxel_ratio)
            if not 0.5 <= ratio <= 2.0:
                notes.append(f"warning: label {value} has {ratio:.2f}x the volume it had when the task was saved: "
                             "check the result, or paint a slice of this image and run painted-slice mode")
        own = (own_agreement or {}).get(str(value))
        if own and s["head_prior_dice"] < AGREEMENT_DROP * own:
            notes.append(f"warning: label {value}: the image does not look like the task's image where the "
                         f"structure is expected (head/prior agreement {s['head_prior_dice']:.2f}, "
                         f"{own:.2f} on the task's image); check the modality and body part")
    return notes
