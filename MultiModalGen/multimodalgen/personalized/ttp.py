"""Test-time personalization (TTP): a short label-free optimisation on one patient's own modalities.

Optimised (on a copy of the model): the modality embeddings, the encoder's BatchNorm affine parameters and the
population prior -- a few hundred parameters -- with BatchNorm statistics frozen (eval mode). Loss: reconstruction
of every present modality from X_h of all present modalities, cross-modal reconstruction from X_h of a random
leave-one-out subset (with >= 2 present), and cross-modal invariance.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn as nn

from multimodalgen.personalized.losses import invariance_loss, reconstruction_loss
from multimodalgen.personalized.model import PersonalizedNet


def ttp_parameters(model: PersonalizedNet) -> list[nn.Parameter]:
    """The parameters TTP adapts (see module docstring)."""
    params = [model.modality_embedding]
    if model.prior is not None:
        params.append(model.prior)
    for module in model.encoder.modules():
        if isinstance(module, nn.BatchNorm3d) and module.affine:
            params += [module.weight, module.bias]
    return params


def personalize(model: PersonalizedNet, images: torch.Tensor, present: torch.Tensor, steps: int = 10,
                lr: float = 5e-3, seed: int = 0, w_inv: float = 0.1) -> tuple[PersonalizedNet, float]:
    """Return `(adapted copy of model, seconds)` after `steps` label-free steps on images `(1, M, ...)`."""
    t0 = time.perf_counter()
    adapted = copy.deepcopy(model).eval()
    for p in adapted.parameters():
        p.requires_grad_(False)
    params = ttp_parameters(adapted)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    idx = present[0].nonzero(as_tuple=True)[0]
    for _ in range(steps):
        z = adapted.encode(images, present)
        xh = adapted.fuse(z, present)
        loss = reconstruction_loss(adapted.reconstruct(xh), images, present)
        if idx.numel() > 1:
            drop = idx[torch.randint(0, idx.numel(), (1,), generator=gen)]
            subset = present.clone()
            subset[:, drop] = False
            loss = loss + reconstruction_loss(adapted.reconstruct(adapted.fuse(z, subset)), images, present)
            loss = loss + w_inv * invariance_loss(z, present)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in adapted.parameters():
        p.requires_grad_(False)
    return adapted.eval(), time.perf_counter() - t0
