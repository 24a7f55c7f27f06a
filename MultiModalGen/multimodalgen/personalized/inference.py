"""`segment_volumes`: any subset of one patient's modalities -> label map (and optionally probabilities).

Whole-volume inference (the model is fully convolutional); the input is zero-padded to the encoder's divisor and
the output cropped back. Output labels are on the reference grid (the first given modality in model order).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from multimodalgen.adapters.inject import inject_adapters, load_adapter_state
from multimodalgen.adapters.io import load_adapter, resolve_adapter_path
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.atlas import (
    DEFAULT_ATLAS_WEIGHT,
    TissueAtlas,
    apply_atlas,
    check_atlas_labels,
    check_atlas_weight,
    view_warning,
)
from multimodalgen.personalized.csf_shell import close_csf_shell
from multimodalgen.personalized.model import PersonalizedNet, _head
from multimodalgen.personalized.prepare import check_modalities, model_input, stack_images, to_image_grid
from multimodalgen.personalized.quality import check_segmentation
from multimodalgen.personalized.refine import check_refine_mode, refine_tissues
from multimodalgen.personalized.sliding import left_right_axis, mirrored_logits, predict_logits
from multimodalgen.progress import Progress
from multimodalgen.terminology import definitions_for, segments_from_labels
from multimodalgen.volume import Volume


def load_with_adapter(adapter: str | Path | None, base_model: str | Path | None = None,
                      device: torch.device | str = "cpu") -> tuple[PersonalizedNet, dict]:
    """The base personalized model with `adapter` applied (None = the base model alone); returns (model, info)."""
    import dataclasses

    from multimodalgen.personalized.weights import load_model

    if adapter is None:
        model, ref = load_model(base_model, device)
        return model, {"base_model": ref.describe(), "adapter": None}
    folder = resolve_adapter_path(adapter)
    from multimodalgen.adapters.io import read_adapter_meta

    meta = read_adapter_meta(folder)
    model, ref = load_model(base_model or meta.base_model.name, device)
    meta, state = load_adapter(folder, base=ref)
    labels = tuple(meta.labels[k] for k in sorted(meta.labels))
    if labels != model.config.labels:
        model.config = dataclasses.replace(model.config, labels=labels)
        model.seg_head = _head(model.config.encoder.out_channels, model.config.head_width, len(labels))
    is_full = meta.adapter.target_modules == ("*",) and not any("lora_a" in k for k in state)
    if is_full:
        model.load_state_dict(state)
    else:
        inject_adapters(model, meta.adapter)
        try:
            load_adapter_state(model, state)
        except ValueError as exc:
            raise UserInputError(f"adapter {meta.name!r} does not fit base model {ref.describe()} ({exc})",
                                 fix="use an adapter fine-tuned on this base model") from None
    return model.to(device).eval(), {"base_model": ref.describe(), "adapter": meta.name}


def segment_volumes(images: dict[str, Volume], adapter: str | Path | None = None,
                    device: torch.device | str = "cpu", progress: Progress | None = None, *,
                    model: PersonalizedNet | None = None, base_model: str | Path | None = None,
                    resample: bool = False, ttp_steps: int = 0, refine: str = "intensity",
                    atlas: TissueAtlas | None = None, atlas_weight: float = DEFAULT_ATLAS_WEIGHT,
                    return_probabilities: bool = False) -> Volume | tuple[Volume, Volume]:
    """Segment one patient from any subset of modalities.

    Args:
        images: modality name -> Volume (names must be known to the model, e.g. T1, T2, PD).
        adapter: adapter folder or name in the user adapter folder; None = the base model.
        model: an already loaded model (then `adapter`/`base_model` are ignored).
        resample: resample images on other grids onto the reference grid (linear) instead of refusing.
        ttp_steps: test-time personalization steps (0 = off; see `personalized.ttp`).
        refine: "intensity" (default): the brain tissues' split is refined by a Gaussian-mixture model of this
            image's own intensities with the network as the spatial prior (`personalized.refine`); "none": the
            network's answer as is. Models without grey/white/CSF classes are never refined.
        atlas: a tissue atlas (`personalized.atlas.read_tissue_atlas`) placed on the reference image by affine
            registration and multiplied into the network's probabilities at power `atlas_weight` before the
            refinement; UserInputError when the model's labels have no atlas class or the placed atlas's brain
            disagrees with the network's (`atlas.check_placement`). None: no atlas.
        return_probabilities: also return a `(C, I, J, K)` float32 probability Volume.
    Returns:
        uint8 label Volume `(I, J, K)` on the reference grid (metadata: label names, `segments` with each label's
        name, colour and terminology (`multimodalgen.terminology`), seconds, ttp seconds, `quality`: volumes in mL,
        confidence and plausibility warnings from `personalized.quality`, `atlas`: source, weight, brain agreement,
        registration seconds and volume scale, or None),
        plus the probability Volume when asked.
    """
    progress = progress or Progress.null()
    device = torch.device(device)
    t0 = time.perf_counter()
    info = {}
    if model is None:
        progress.update("load", 0.0, "loading model")
        model, info = load_with_adapter(adapter, base_model, device)
    check_modalities(images.keys(), model.config.modalities)
    check_refine_mode(refine)
    if atlas is not None:
        check_atlas_weight(atlas_weight)
        check_atlas_labels(model.config.labels)
        atlas = atlas if atlas_weight > 0 else None           # weight 0: the atlas is off, nothing is placed
    array, present, reference = stack_images(images, model.config.modalities, resample=resample,
                                             ct_window=model.config.ct_window)
    x, size, native = model_input(array, reference.spacing, model.config)
    x = x.to(device)
    mask = torch.from_numpy(present)[None].to(device)
    ttp_seconds = 0.0
    if ttp_steps > 0:
        from multimodalgen.personalized.ttp import personalize

        progress.update("personalize", 0.2, f"{ttp_steps} test-time steps")
        model, ttp_seconds = personalize(model, x, mask, steps=ttp_steps)
    progress.update("segment", 0.6, "running the model")
    with torch.no_grad():
        logits = (mirrored_logits(model, x, mask, left_right_axis(reference.affine)) if model.config.mirror_lr
                  else predict_logits(model, x, mask))
        probs = to_image_grid(logits, size, native).softmax(dim=1)[0]
    atlas_info = None
    if atlas is not None:
        progress.update("segment", 0.7, "placing the tissue atlas")
        probs, atlas_info = apply_atlas(probs, atlas, reference, model.config.labels, atlas_weight, device)
    refined = "none"
    if refine != "none":
        progress.update("segment", 0.8, "refining with the image's intensities")
        probs, refined = refine_tissues(probs, torch.from_numpy(array[present]).to(probs.device),
                                        [m for m, p in zip(model.config.modalities, present) if p],
                                        model.config.labels, refine, model.config.refine_prior_power,
                                        model.config.refine_init)
        probs, shell = close_csf_shell(probs, model.config.labels, reference.spacing, model.config.csf_shell_mm)
        refined = f"{refined}; {shell}" if shell else refined
    top, winner = probs.max(dim=0)                                  # winning probability and label per voxel
    labels = winner.cpu().numpy().astype(np.uint8)
    voxel_ml = abs(float(np.linalg.det(reference.affine[:3, :3]))) / 1e3
    quality = check_segmentation(labels, top.cpu().numpy(), voxel_ml, dict(enumerate(model.config.labels)))
    if atlas_info and view_warning(atlas_info):
        quality.setdefault("warnings", []).append(view_warning(atlas_info))   # the image shows little of the brain
    meta = {"labels": dict(enumerate(model.config.labels)),
            "segments": segments_from_labels(definitions_for(model.config.labels)),
            "modalities": [m for m, p in
            zip(model.config.modalities, present) if p], "seconds": round(time.perf_counter() - t0, 2),
            "ttp_seconds": round(ttp_seconds, 2), "refine": refined, "working_spacing_mm": model.config.working_spacing or None,
            "quality": quality, "atlas": atlas_info, **info}
    out = Volume(labels, reference.affine.copy(), "LABEL", meta)
    progress.update("segment", 1.0, "done")
    if return_probabilities:
        return out, Volume(probs.cpu().numpy().astype(np.float32), reference.affine.copy(), "FEATURES", meta)
    return out
