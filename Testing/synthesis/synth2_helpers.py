"""A tiny generated tissue-probability map laid out like a data folder (never real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_fake_data_folder(root: Path, shape=(24, 28, 24), spacing=3.0) -> Path:
    """`root/spm_templates/TPM.nii.gz`: concentric soft shells (WM core, GM, CSF, bone, soft tissue, air) as a
    `(I, J, K, 6)` probability map on a `spacing` mm grid centred at the origin; plus a small label map standing in
    for the CT masks. Returns `root`."""
    import nibabel as nib

    idx = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"), -1) * spacing
    r = np.linalg.norm(idx / np.array([1.0, 1.15, 1.0]), axis=-1)
    centres = np.array([10.0, 22.0, 28.0, 32.0, 36.0, 60.0])          # WM, GM, CSF, bone, soft, air radii (mm)
    logits = -((r[..., None] - centres) / 4.0) ** 2
    order = [1, 0, 2, 3, 4, 5]                                          # TPM order: GM, WM, CSF, bone, soft, air
    probs = np.exp(logits[..., order])
    probs /= probs.sum(-1, keepdims=True)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
    (root / "spm_templates").mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(probs.astype(np.float32), affine).to_filename(str(root / "spm_templates" / "TPM.nii.gz"))
    labels = np.zeros((10, 10, 8), np.int16)
    labels[2:8, 2:8, 2:6] = 1
    labels[4:6, 4:6, 3:5] = 2
    (root / "invesalius_ct_head").mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(labels, np.eye(4)).to_filename(str(root / "invesalius_ct_head" / "ct_head_threshold_masks.nii.gz"))
    return root
