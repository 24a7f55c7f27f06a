"""synth-2 head subjects as contrastive views for encoder pretraining (anatomix recipe on real anatomy).

`render_head_views(sampler, seed, shape, n_views)` renders one individual head (`subjects.HeadSubjectSampler`) as
`n_views` images, each a random modality of `physics.MODALITIES` with its own acquisition (so two views may be T1 and
CT of the same anatomy, or two T1 acquisitions), normalised with `multimodalgen.intensity.normalize` exactly as the
encoder's inference normalises user images. Voxel spacing is drawn per subject in [1, 2.5] mm so the encoder sees
anatomy at several scales.

Returns images `(V, I, J, K)` float32 in [0, 1]; labels `(V, I, J, K)` int64 = class * 4 + texture sub-class (the
fine labels SupCon contrasts: same label in either view = positive); roles `(V, I, J, K)` int64 in the encoder's
role convention (`synthesis.labels.ROLE_NAMES`: 0 outer fluid = CSF, 1 ribbon = grey matter, 2 core = white matter,
-1 elsewhere). All views share one anatomy, so labels are identical across views.
"""

from __future__ import annotations

import numpy as np
import torch

from multimodalgen.intensity import normalize
from multimodalgen.synthesis.physics import MODALITIES

#: head class (0 bg, 1 GM, 2 WM, 3 CSF, 4 skull, 5 soft tissue) -> encoder role (0 fluid, 1 ribbon, 2 core, -1)
_ROLE_OF_CLASS = torch.tensor([-1, 1, 2, 0, -1, -1])


def render_head_views(sampler, seed: int, shape: tuple[int, int, int], n_views: int = 2
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See the module docstring. Deterministic given `seed`."""
    rng = np.random.default_rng(int(seed))
    spacing = float(rng.uniform(1.0, 2.5))
    modalities = tuple(str(m) for m in rng.choice(MODALITIES, size=n_views, replace=True))
    unique = tuple(dict.fromkeys(modalities))
    # one subject per distinct modality set; repeated modalities get their own acquisition via a second subject
    # draw with the same anatomy seed but another acquisition seed
    views = []
    sub = sampler.sample(int(rng.integers(0, 2**31 - 1)), shape, spacing, unique, p_partial=0.1)
    rendered = {m: sub.images[m] for m in unique}
    for v, m in enumerate(modalities):
        image = rendered.pop(m, None)
        if image is None:                                            # a repeated modality: re-acquire it
            from multimodalgen.synthesis.physics import render_modality, sample_acquisition

            image = render_modality(sub.classes, sub.subclasses, sub.table, sample_acquisition(rng, m), spacing)
        views.append(torch.from_numpy(normalize(image.cpu().numpy(), m)))
    labels = (sub.classes * 4 + sub.subclasses).cpu()
    roles = _ROLE_OF_CLASS[sub.classes.cpu()]
    return torch.stack(views), labels[None].repeat(n_views, 1, 1, 1), roles[None].repeat(n_views, 1, 1, 1)
