"""Training batches of synth-2 head subjects for personalized models (adapter over `multimodalgen.synthesis`).

Each subject is one individual head (`synthesis.subjects`) rendered as every modality of the model on the model's
working grid, then normalised with `multimodalgen.intensity.normalize` exactly as `prepare.stack_images` normalises
user images at inference (same CT window). Targets are the head classes of `synthesis.head.HEAD_CLASSES`, which are
the model's label values.

Shapes: images `(B, M, I, J, K)` float32 in [0, 1] (model modality order), classes `(B, I, J, K)` int64.
"""

from __future__ import annotations

import torch

from multimodalgen.intensity import CT_WINDOW_HU, normalize
from multimodalgen.synthesis.head import MAX_OFFSET_MM
from multimodalgen.synthesis.label_sources import read_label_folder
from multimodalgen.synthesis.subjects import HeadSubjectSampler


class HeadBatches:
    """Draws normalised multimodal head subjects from a prepared label folder (read once)."""

    def __init__(self, label_dir: str, modalities: tuple[str, ...], spacing: float,
                 ct_window: tuple[float, float] | None = None, p_partial: float = 0.2, p_epi: float = 0.1,
                 p_template: float = 0.0, device: torch.device | str = "cpu",
                 max_offset_mm: float = MAX_OFFSET_MM, template_brain_share: float = 0.0,
                 template_sulcal_csf_shift: float = 0.0) -> None:
        if spacing <= 0:
            raise ValueError("head subjects need the model's working spacing (> 0 mm)")
        self.sampler = HeadSubjectSampler(read_label_folder(label_dir), device)
        self.modalities = tuple(modalities)
        self.spacing = float(spacing)
        self.ct_window = tuple(ct_window or CT_WINDOW_HU)
        self.p_partial, self.p_epi, self.p_template = p_partial, p_epi, p_template
        self.max_offset_mm = float(max_offset_mm)
        self.template_brain_share = float(template_brain_share)
        self.template_sulcal_csf_shift = float(template_sulcal_csf_shift)

    def subject(self, seed: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One subject: images `(M, I, J, K)` in [0, 1] and classes `(I, J, K)` int64."""
        sub = self.sampler.sample(seed, shape, self.spacing, self.modalities, self.p_partial, self.p_epi,
                                  self.p_template, self.max_offset_mm, self.template_brain_share,
                                  self.template_sulcal_csf_shift)
        images = [torch.from_numpy(normalize(sub.images[m].cpu().numpy(), m, ct_window=self.ct_window))
                  for m in self.modalities]
        return torch.stack(images), sub.classes.cpu()

    def batch(self, seeds: list[int], shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked subjects: images `(B, M, I, J, K)`, classes `(B, I, J, K)`."""
        out = [self.subject(s, shape) for s in seeds]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])

