"""Per-structure confidence and the "suggest next slice" answer, from the fused log-odds of a few-shot run.

- **confidence** of a label: 1 minus the fraction of its result (plus the voxels it nearly took) that is *unsure*
  (|log-odds| < `UNSURE_LOGIT`, i.e. probability between about 0.12 and 0.88), counted on the slices nobody
  painted; 1.0 = every unpainted voxel of the structure is decided clearly, 0.5 = half of it is a coin toss.
- **suggested slice**: the unpainted slice along the primary axis with the most uncertainty (sum over labels of the
  binary entropy of the fused probability, in voxels), i.e. where one more painted slice would settle the most.

Both are reported in the result (`metadata["fewshot"]["confidence"]`, `["suggested_slice"]`) with slice indices
in the whole image's voxel grid.
"""

from __future__ import annotations

import numpy as np

#: |log-odds| below this counts as unsure.
UNSURE_LOGIT = 2.0


def _entropy(logits: np.ndarray) -> np.ndarray:
    p = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def confidence_report(logits: np.ndarray, labels_box: np.ndarray, known: np.ndarray, labels: tuple[int, ...],
                      axis: int, box_start: tuple[int, int, int]) -> tuple[dict, dict | None]:
    """(confidence {label: float in [0, 1]}, suggested slice {"label" (the most uncertain there), "axis", "index",
    "uncertainty_voxels"} or None).

    Args:
        logits: `(L, I, J, K)` fused log-odds on the box (background 0).
        labels_box: `(I, J, K)` final label values on the box.
        known: `(I, J, K)` bool, voxels on annotated slices.
        axis: the primary slice axis; `box_start`: the box's first voxel in the whole grid.
    """
    unknown = ~known
    confidence = {}
    other = tuple(a for a in range(3) if a != axis)
    per_label = np.zeros((len(labels), labels_box.shape[axis]), np.float64)
    for li, value in enumerate(labels):
        lg = logits[li]
        unsure = (np.abs(lg) < UNSURE_LOGIT) & unknown
        region = ((labels_box == value) & unknown) | unsure
        n = int(region.sum())
        confidence[int(value)] = round(1.0 - float(unsure.sum()) / n, 4) if n else 1.0
        per_label[li] = np.where(unknown, _entropy(lg), 0.0).sum(axis=other)
    entropy_total = per_label.sum(0)
    painted_slices = known.all(axis=other)
    entropy_total[painted_slices] = 0.0
    if not np.any(entropy_total > 0.5):
        return confidence, None
    best = int(np.argmax(entropy_total))
    return confidence, {"label": int(labels[int(np.argmax(per_label[:, best]))]), "axis": int(axis),
                        "index": int(best + box_start[axis]),
                        "uncertainty_voxels": round(float(entropy_total[best]), 1)}
