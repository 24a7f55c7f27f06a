"""Randomized-synthesis data engine (anatomix-style): random label ensembles rendered as several random-appearance views.

Submodules (import them directly; this file stays light):
    config      -- `EngineConfig`, `LabelConfig`, `AppearanceConfig`, `ENGINE_VERSION`
    fields      -- smooth random fields, Gaussian blur, warping (torch, deterministic given a generator)
    labels      -- `sample_label_params(cfg, rng, shape)` then `render_labels(params, device)`
    appearance  -- `sample_appearance_params(cfg, rng, n_labels)` then `render_appearance(labels, params, device)`
    views       -- `sample_params(cfg, seed)` then `render_sample(params, device)`; `generate_batch(...)`
"""

from multimodalgen.synthesis.config import ENGINE_VERSION

__all__ = ["ENGINE_VERSION"]
