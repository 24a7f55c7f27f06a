"""One-shot / few-volume mode: labelled support volume(s) of other patients -> segmentation of a query volume.

1. each support label map is carried onto the query grid by registration (`multimodalgen.registration`,
   deformable "fast", when that engine is present; otherwise by the image headers after aligning the intensity
   centres of mass, which is reported): the **transferred label** decides where and how big the structure is;
2. the head (`head.py`) is trained on the support cases' voxel features in a box around their labels (every
   labelled voxel, background sampled with more weight near the structures) and applied to the query in a box
   around the transferred labels (features computed on those boxes only);
3. fusion per label: `logit = head_weight * head_logodds - signed_distance(transferred) / prior_tau_mm` (priors of
   several support cases averaged): the head moves the boundary to the query's edges, within a few mm;
4. **volume control**: when the result's volume differs from the transferred label's by more than
   `volume_tolerance`, a common offset is added to that label's log-odds (bisection) to bring it back to the
   tolerance's edge (the registration knows the size, the head knows the edges);
5. per label the components overlapping the transferred label are kept, holes filled.
All arrays are `(I, J, K)` on their own image grid; distances in mm.
"""

from __future__ import annotations

import os
import time

import numpy as np
from scipy import ndimage as ndi

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume


def _cases(support_images, support_labels) -> list[tuple[list[Volume], Volume]]:
    from multimodalgen.fewshot.api import as_channel_list

    if isinstance(support_labels, Volume):
        support_labels = [support_labels]
    if isinstance(support_images, Volume) or (isinstance(support_images, (list, tuple)) and support_images and
                                              all(isinstance(v, Volume) for v in support_images)):
        support_images = [support_images]  # the channels of a single support case
    if len(support_images) != len(support_labels):
        raise UserInputError("support images and labels do not pair up", expected="one label map per support case",
                             got=f"{len(support_images)} image sets, {len(support_labels)} label maps")
    return [(as_channel_list(imgs), lab) for imgs, lab in zip(support_images, support_labels)]


def _signed_distance_3d(mask: np.ndarray, spacing) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    return (ndi.distance_transform_edt(~mask, sampling=spacing) -
            ndi.distance_transform_edt(mask, sampling=spacing)).astype(np.float32)


def transfer_label(support_image: Volume, support_label: Volume, query: Volume, *, register: str = "auto",
                   device="cpu", progress=None) -> tuple[np.ndarray, str]:
    """The support label map carried onto the query grid, and how ("registration" / "centre of mass")."""
    from multimodalgen.resample import resample_array

    if register != "off":
        try:
            from multimodalgen.registration import register_volumes
            from multimodalgen.registration.export import warp_volume
        except ImportError:
            if register == "on":
                raise UserInputError("registration was requested but the registration engine is not available",
                                     fix="use register='auto' or 'off'") from None
        else:
            result = register_volumes(query, support_image, mode="deformable", preset="fast", device=device,
                                      progress=progress)
            return warp_volume(result, support_label, order="nearest").array, "registration (deformable, fast)"
    shift = _centre_of_mass(query) - _centre_of_mass(support_image)
    moved = support_label.affine.copy()
    moved[:3, 3] += shift
    warped = resample_array(support_label.array, moved, query.shape3d, query.affine, order="nearest")
    return warped, f"image headers + centre-of-mass shift {np.round(shift, 1).tolist()} mm (no registration)"


def _centre_of_mass(volume: Volume) -> np.ndarray:
    from multimodalgen.intensity import normalize

    weights = normalize(volume.array, volume.modality)
    ijk = np.asarray(ndi.center_of_mass(weights))
    return volume.affine[:3, :3] @ ijk + volume.affine[:3, 3]


def support_training_voxels(features: np.ndarray, label: np.ndarray, labels: tuple[int, ...], spacing,
                            max_voxels: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training voxels of one support case: `(x (N, F), classes (N,), weights (N,))`."""
    classes = np.zeros(label.shape, np.int64)
    for c, value in enumerate(labels, start=1):
        classes[label == value] = c
    near = ndi.distance_transform_edt(classes == 0, sampling=spacing) < 10.0
    from multimodalgen.fewshot.engine import training_voxels

    return training_voxels(features, classes, near, max_voxels, seed)


def _label_box(mask: np.ndarray, spacing, margin_mm: float):
    """Voxel box `(start, stop)` around a boolean mask grown by `margin_mm`."""
    idx = np.argwhere(mask)
    grow = np.ceil(margin_mm / np.asarray(spacing, np.float64)).astype(int)
    lo = np.maximum(idx.min(0) - grow, 0)
    hi = np.minimum(idx.max(0) + 1 + grow, mask.shape)
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi)


def _box_slices(box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(*box))


def match_volume(logit: np.ndarray, target_voxels: float, tolerance: float) -> tuple[np.ndarray, float]:
    """`logit + offset` whose positive count lies within `target * (1 +- tolerance)` (bisection on the offset);
    returns the shifted log-odds and the offset (0 when already inside)."""
    count = int((logit > 0).sum())
    low, high = target_voxels * (1.0 - tolerance), target_voxels * (1.0 + tolerance)
    if low <= count <= high or target_voxels <= 0:
        return logit, 0.0
    goal = high if count > high else low
    lo_b, hi_b = -30.0, 30.0
    for _ in range(40):
        mid = 0.5 * (lo_b + hi_b)
        if int((logit + mid > 0).sum()) > goal:
            hi_b = mid
        else:
            lo_b = mid
    offset = lo_b if count > high else hi_b
    return logit + offset, float(offset)


def segment_from_support(support_images, support_labels, query_images, *, labels=None, device="cpu",
                         progress=None, seed: int = 0, config=None, register: str = "auto",
                         prior_tau_mm: float = 1.5, margin_mm: float = 10.0,
                         volume_tolerance: float = 0.1) -> Volume:
    """Segment a query patient from labelled support case(s).

    Args:
        support_images: one support case's channels (list of Volumes) or a list of such lists.
        support_labels: its label map (Volume on its grid) or a list of them (one per case).
        query_images: the query's channels (list of Volumes on one grid), same modalities/order as the support.
        labels: label values to segment (default: every label of the support).
        register: "auto" (registration prior when the engine exists), "on" (required), "off" (headers only).
        prior_tau_mm: softness (mm) of the transferred-label prior.
        margin_mm: the head works in the labels' bounding boxes grown by this.
        volume_tolerance: allowed relative volume difference between the result and the transferred label.

    Returns:
        Label Volume on the query's grid; report in `metadata["fewshot"]` (labels, notes, per-label volumes of the
        transferred label and the result, offsets applied by the volume control, seconds).
    """
    from multimodalgen.fewshot.api import _resolve_device, align_channels, as_channel_list
    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.features import FeatureSource
    from multimodalgen.fewshot.head import build_head, predict_logits, train_head
    from multimodalgen.fewshot.postprocess import decide, keep_connected_to
    from multimodalgen.progress import Progress
    from multimodalgen.volume import check_label_array, same_grid

    if register not in ("auto", "on", "off"):
        raise UserInputError("invalid register option", expected="auto, on or off", got=repr(register))
    config = config or FewShotConfig()
    progress = progress or Progress.null()
    device = _resolve_device(device)
    t0 = time.perf_counter()
    cases = _cases(support_images, support_labels)
    query = align_channels(as_channel_list(query_images), False, [])
    for n, (_, lab) in enumerate(cases):
        if not (check_label_array(lab.array) > 0).any():
            raise UserInputError(f"support label {n + 1} is empty (no foreground)", expected="labels > 0 in every "
                                 "support label map", got="all zero", fix="give the label map of the support case")
    present = sorted({int(v) for _, lab in cases for v in np.unique(lab.array) if v > 0})
    wanted = tuple(sorted(int(v) for v in labels)) if labels else tuple(present)
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise UserInputError("requested labels are not in the support labels", expected=f"labels among {present}",
                             got=f"{missing}")
    notes: list[str] = []
    checked = []
    for n, (imgs, lab) in enumerate(cases):
        imgs = align_channels(imgs, False, notes)
        if len(imgs) != len(query):
            raise UserInputError("support and query have different channels", expected=f"{len(imgs)} channel(s) "
                                 "on both sides", got=f"{len(query)} query channel(s)",
                                 fix="give the same modalities in the same order")
        if not same_grid(imgs[0], lab):
            raise UserInputError(f"support label {n + 1} is not on its image's grid",
                                 expected=f"shape {imgs[0].shape3d}", got=f"shape {lab.shape3d}",
                                 fix="resample the label onto its image (multimodalgen convert --label --reference)")
        checked.append((imgs, lab))
    # 1. transferred labels
    transferred = []
    for n, (imgs, lab) in enumerate(checked):
        warped, how = transfer_label(imgs[0], lab, query[0], register=register, device=device)
        notes.append(f"support {n + 1} label carried by {how}")
        transferred.append(warped)
        progress.update("prior", 0.4 * (n + 1) / len(checked), how)
    qspacing = np.asarray(query[0].spacing, np.float64)
    any_fg = np.any([np.isin(t, wanted) for t in transferred], axis=0)
    if not any_fg.any():
        raise UserInputError("the support labels fall outside the query image", expected="a query of the same "
                             "body part as the support", got="no transferred label voxel inside the query",
                             fix="check the images (same modality and body part), or use register='on'")
    # 2. head on boxes around the labels
    xs, ys, ws = [], [], []
    for n, (imgs, lab) in enumerate(checked):
        source = FeatureSource(np.stack([v.array for v in imgs]), imgs[0].affine, [v.modality for v in imgs],
                               config.features, device)
        box = _label_box(np.isin(lab.array, wanted), source.spacing, margin_mm)
        x, y, w = support_training_voxels(source.features(box), lab.array[_box_slices(box)], wanted, source.spacing,
                                          config.max_train_voxels, seed + n)
        xs.append(x)
        ys.append(y)
        ws.append(w)
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    head = build_head(x.shape[1], 1 + len(wanted), config.head, seed)
    train_head(head, x, y, config.head, seed=seed, device=device, sample_weight=w)
    progress.update("query", 0.6, "query features")
    qsource = FeatureSource(np.stack([v.array for v in query]), query[0].affine, [v.modality for v in query],
                            config.features, device)
    qbox = _label_box(any_fg, qspacing, margin_mm)
    crop = _box_slices(qbox)
    logits = predict_logits(head, qsource.features(qbox), device=device)
    fused = config.head_weight * np.clip(logits[1:] - logits[:1], -6.0, 6.0)
    target = {}
    for c, value in enumerate(wanted):
        for warped in transferred:
            fused[c] += -_signed_distance_3d(warped[crop] == value, qspacing) / prior_tau_mm / len(transferred)
        target[int(value)] = float(np.mean([(t == value).sum() for t in transferred]))
    # 4. volume control per label
    offsets = {}
    for c, value in enumerate(wanted):
        fused[c], offsets[int(value)] = match_volume(fused[c], target[int(value)], volume_tolerance)
    classes = decide(np.clip(fused, -30, 30))
    out = np.zeros(query[0].shape3d, np.uint8 if max(wanted) < 256 else np.int32)
    out_crop = out[crop]
    for c, value in enumerate(wanted, start=1):
        seeds = np.any([t[crop] == value for t in transferred], axis=0)
        mask = keep_connected_to(classes == c, seeds) if seeds.any() else classes == c
        out_crop[ndi.binary_fill_holes(mask) & (out_crop == 0)] = value
    progress.update("done", 1.0, "segmented")
    report = {"labels": list(wanted), "support_cases": len(cases), "notes": notes,
              "transferred_voxels": {k: round(v, 1) for k, v in target.items()},
              "result_voxels": {int(v): int((out == v).sum()) for v in wanted},
              "volume_offsets": offsets, "seconds": round(time.perf_counter() - t0, 3),
              "encoder": qsource.use_encoder}
    return Volume(out, query[0].affine.copy(), "LABEL", {"fewshot": report})


def support_files(support_image_paths, support_label_paths, query_paths, out_path, *, labels=None, device="cpu",
                  progress=None, seed: int = 0, register: str = "auto") -> dict:
    """File level: `support_image_paths` = list (per case) of [(modality, path)], labels = list of paths."""
    from multimodalgen.io import read_label, read_volume, write_label

    support = [[read_volume(p, m) for m, p in case] for case in support_image_paths]
    labels_v = [read_label(p) for p in support_label_paths]
    query = [read_volume(p, m) for m, p in query_paths]
    result = segment_from_support(support, labels_v, query, labels=labels, device=device, progress=progress,
                                  seed=seed, register=register)
    write_label(result, out_path)
    report = dict(result.metadata["fewshot"])
    report["output"] = os.fspath(out_path)
    return report
