"""The CSF shell: skull labelled right against the brain becomes CSF (an anatomical rule after the refinement).

    close_csf_shell(probabilities, label_names, spacing_mm, shell_mm) -> (probabilities, description)

Between the cortex and the inner table of the skull there is always a layer of cerebrospinal fluid (the
subarachnoid space, 1-4 mm at an adult's convexity, wider with atrophy). Our synthetic training heads have it
(`synthesis.head`, 1.5-4 mm in 80 % of subjects), but on smooth real images the network puts the inner table one
voxel too deep: on SPM oldnorm T1, 13.4k of the truth's 23.4k CSF voxels were called skull, all in that outer
layer (benchmarks/personalized/results/confusion_2026-12-06_v8-v9.txt). The rule: every voxel whose winning class
is skull and whose centre lies within `shell_mm` (Euclidean, in mm on the image grid, anisotropic spacing
respected) of a grey- or white-matter voxel's centre is given to CSF. The skull's probability is moved onto CSF's
at those voxels, so the probabilities still sum to one and their argmax is CSF. Nothing else changes: grey and
white matter, soft tissue, background and ventricles keep their labels. The distance is a per-model setting
(`PersonalizedConfig.csf_shell_mm`, 0 = off), chosen on the dev benchmark with `refine_select.py`.
"""

from __future__ import annotations

import numpy as np
import torch


def close_csf_shell(probabilities: torch.Tensor, label_names: tuple[str, ...] | list[str],
                    spacing_mm: tuple[float, float, float], shell_mm: float) -> tuple[torch.Tensor, str]:
    """Give skull voxels within `shell_mm` of grey or white matter to CSF.

    Args:
        probabilities: `(C, I, J, K)` class probabilities on the image grid (sum 1 over C).
        label_names: the C class names (any spelling `terminology.canonical_name` knows).
        spacing_mm: voxel size along I, J, K in mm.
        shell_mm: the shell's thickness in mm (distance between voxel centres); 0 = off.
    Returns:
        (probabilities `(C, I, J, K)` on the input's device and dtype, a one-line description for the metadata; "" when
        nothing was done: shell off, or the labels lack grey/white matter, CSF or skull).
    """
    from scipy import ndimage

    from multimodalgen.terminology import canonical_name

    if shell_mm <= 0:
        return probabilities, ""
    index = {canonical_name(n): i for i, n in enumerate(label_names)}
    needed = ("grey matter", "white matter", "cerebrospinal fluid", "skull")
    if any(n not in index for n in needed):
        return probabilities, ""
    grey, white, csf, skull = (index[n] for n in needed)
    winner = probabilities.argmax(dim=0).cpu().numpy()
    brain = (winner == grey) | (winner == white)
    is_skull = winner == skull
    if not brain.any() or not is_skull.any():
        return probabilities, f"CSF shell {shell_mm:g} mm (0 voxels)"
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    box = _bounding_box(brain, np.ceil(shell_mm / spacing).astype(int) + 1)
    distance = ndimage.distance_transform_edt(~brain[box], sampling=spacing)
    shell = np.zeros_like(brain)
    shell[box] = (distance <= shell_mm) & is_skull[box]
    moved = torch.from_numpy(shell).to(probabilities.device)
    out = probabilities.clone()
    out[csf] = torch.where(moved, probabilities[csf] + probabilities[skull], probabilities[csf])
    out[skull] = torch.where(moved, torch.zeros_like(probabilities[skull]), probabilities[skull])
    return out, f"CSF shell {shell_mm:g} mm ({int(shell.sum())} skull voxels given to CSF)"


def _bounding_box(mask: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    """Slices of `mask`'s bounding box grown by `margin` voxels per axis (clipped to the array)."""
    box = []
    for axis, (size, pad) in enumerate(zip(mask.shape, margin)):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hits[0]) - int(pad)), min(size, int(hits[-1]) + int(pad) + 1)))
    return tuple(box)
