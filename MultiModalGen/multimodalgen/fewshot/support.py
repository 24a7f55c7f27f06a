"""One-shot / few-volume mode: labelled support volume(s) of other patients -> segmentation of a query volume.

1. The head (`head.py`) is trained on the support cases' voxel features (every labelled voxel, background sampled
   with more weight near the structures);
2. it is applied to the query's features;
3. a spatial prior is fused in: each support label map is carried onto the query grid by registration
   (`multimodalgen.registration.register_volumes`, deformable "fast", when that engine is present; otherwise by
   the image headers after aligning the intensity centres of mass, which is reported), turned into a signed
   distance (mm) and into log-odds `-distance / tau`; the priors of several support cases are averaged;
4. per label the components overlapping the transferred label are kept (the largest one when none does).
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


def segment_from_support(support_images, support_labels, query_images, *, labels=None, device="cpu",
                         progress=None, seed: int = 0, config=None, register: str = "auto",
                         prior_tau_mm: float = 3.0) -> Volume:
    """Segment a query patient from labelled support case(s).

    Args:
        support_images: one support case's channels (list of Volumes) or a list of such lists.
        support_labels: its label map (Volume on its grid) or a list of them (one per case).
        query_images: the query's channels (list of Volumes on one grid), same modalities/order as the support.
        labels: label values to segment (default: every label of the support).
        register: "auto" (registration prior when the engine exists), "on" (required), "off" (headers only).
        prior_tau_mm: softness (mm) of the transferred-label prior.

    Returns:
        Label Volume on the query's grid; report in `metadata["fewshot"]`.
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
    present = sorted({int(v) for _, lab in cases for v in np.unique(check_label_array(lab.array)) if v > 0})
    if not present:
        raise UserInputError("the support label maps are empty", expected="labels > 0", got="all zero")
    wanted = tuple(sorted(int(v) for v in labels)) if labels else tuple(present)
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise UserInputError("requested labels are not in the support labels", expected=f"labels among {present}",
                             got=f"{missing}")
    xs, ys, ws = [], [], []
    notes: list[str] = []
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
        source = FeatureSource(np.stack([v.array for v in imgs]), imgs[0].affine, [v.modality for v in imgs],
                               config.features, device)
        x, y, w = support_training_voxels(source.features(None), lab.array, wanted, source.spacing,
                                          config.max_train_voxels, seed + n)
        xs.append(x)
        ys.append(y)
        ws.append(w)
        progress.update("support", 0.3 * (n + 1) / len(cases), f"support case {n + 1} features")
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    head = build_head(x.shape[1], 1 + len(wanted), config.head, seed)
    train_head(head, x, y, config.head, steps=2 * config.head.steps, seed=seed, device=device, sample_weight=w)
    progress.update("query", 0.5, "query features")
    qsource = FeatureSource(np.stack([v.array for v in query]), query[0].affine, [v.modality for v in query],
                            config.features, device)
    logits = predict_logits(head, qsource.features(None), device=device)
    fused = config.head_weight * (logits[1:] - logits[:1])
    transferred = []
    for n, (imgs, lab) in enumerate(cases):
        warped, how = transfer_label(imgs[0], lab, query[0], register=register, device=device)
        notes.append(f"support {n + 1} label carried by {how}")
        transferred.append(warped)
        for c, value in enumerate(wanted):
            fused[c] += -_signed_distance_3d(warped == value, qsource.spacing) / prior_tau_mm / len(cases)
        progress.update("prior", 0.5 + 0.4 * (n + 1) / len(cases), how)
    classes = decide(np.clip(fused, -30, 30))
    out = np.zeros(classes.shape, np.uint8 if max(wanted) < 256 else np.int32)
    for c, value in enumerate(wanted, start=1):
        seeds = np.any([t == value for t in transferred], axis=0)
        mask = keep_connected_to(classes == c, seeds) if seeds.any() else classes == c
        out[ndi.binary_fill_holes(mask) & (out == 0)] = value
    progress.update("done", 1.0, "segmented")
    report = {"labels": list(wanted), "support_cases": len(cases), "notes": notes,
              "seconds": round(time.perf_counter() - t0, 3), "encoder": qsource.use_encoder}
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
