"""Evaluation helpers: Dice per class and over every non-empty modality subset."""

from __future__ import annotations

import itertools

import torch


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> list[float]:
    """Dice of classes 1..n_classes-1 between integer maps of the same shape (nan where both are empty)."""
    out = []
    for c in range(1, n_classes):
        p, t = pred == c, target == c
        denom = int(p.sum() + t.sum())
        out.append(float(2 * (p & t).sum()) / denom if denom else float("nan"))
    return out


def all_subsets(modalities: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset, smallest first, in modality order."""
    return [s for r in range(1, len(modalities) + 1) for s in itertools.combinations(modalities, r)]


def present_mask(subset: tuple[str, ...], modalities: tuple[str, ...], batch: int = 1) -> torch.Tensor:
    """`(batch, M)` bool mask of `subset`."""
    row = torch.tensor([m in subset for m in modalities])
    return row[None].repeat(batch, 1)


@torch.no_grad()
def predict(model, images: torch.Tensor, present: torch.Tensor, late_fusion: bool = False) -> torch.Tensor:
    """Softmax probabilities `(B, C, ...)`; `late_fusion` averages the single-modality predictions instead."""
    if not late_fusion:
        return model(images, present, reconstruct=False)["logits"].softmax(dim=1)
    probs = 0
    for k in range(present.shape[1]):
        if bool(present[0, k]):
            single = torch.zeros_like(present)
            single[:, k] = True
            probs = probs + model(images, single, reconstruct=False)["logits"].softmax(dim=1)
    return probs / present[0].sum()


@torch.no_grad()
def predict_subsets(model, images: torch.Tensor, subsets: list[tuple[str, ...]], modalities: tuple[str, ...],
                    late_fusion: bool = False) -> dict[str, torch.Tensor]:
    """Probabilities `(1, C, ...)` for every subset (key "T1+T2"), from images `(1, M, ...)` holding all modalities.

    For a `PersonalizedNet` without Early Intervention each modality is encoded once and the subsets only re-fuse
    (X_h is a masked mean, so this equals a separate forward per subset); otherwise one forward per subset.
    """
    from multimodalgen.personalized.model import PersonalizedNet

    out = {}
    reuse = isinstance(model, PersonalizedNet) and model.ei_proj is None
    if reuse:
        z = model.encode(images, present_mask(tuple(modalities), modalities).to(images.device))
    for subset in subsets:
        present = present_mask(subset, modalities).to(images.device)
        if not reuse:
            out["+".join(subset)] = predict(model, images, present, late_fusion)
        elif late_fusion:
            probs = 0
            for k in present[0].nonzero(as_tuple=True)[0].tolist():
                single = torch.zeros_like(present)
                single[:, k] = True
                probs = probs + model.segment_logits(model.fuse(z, single)).softmax(dim=1)
            out["+".join(subset)] = probs / len(subset)
        else:
            out["+".join(subset)] = model.segment_logits(model.fuse(z, present)).softmax(dim=1)
    return out
