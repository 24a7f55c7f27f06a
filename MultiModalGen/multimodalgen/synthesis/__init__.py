"""Randomized-synthesis data engine. synth-1 (anatomix-style): random label ensembles rendered as several
random-appearance views. synth-2 (SynthSeg-style, real anatomy): individual heads drawn from a folder of real,
licence-cleared label maps, rendered as several physics-shaped modalities of the same subject.

Submodules (import them directly; this file stays light):
    config      -- `EngineConfig`, `LabelConfig`, `AppearanceConfig`, `ENGINE_VERSION`
    fields      -- smooth random fields, Gaussian blur, warping (torch, deterministic given a generator)
    labels      -- `sample_label_params(cfg, rng, shape)` then `render_labels(params, device)`
    appearance  -- `sample_appearance_params(cfg, rng, n_labels)` then `render_appearance(labels, params, device)`
    views       -- `sample_params(cfg, seed)` then `render_sample(params, device)`; `generate_batch(...)`
  synth-2:
    label_sources  -- `prepare_label_folder(data, out)` (licence allow-list) and `read_label_folder(folder)`
    prepare_labels -- `python -m multimodalgen.synthesis.prepare_labels --data ../shared/data --out DIR`
    head        -- individual head anatomy from a tissue-probability map (`sample_head_params`, `render_head`)
    physics     -- T1/T2/PD/FLAIR (spin echo, inversion recovery), CT (HU), PET renderers and acquisition nuisances
    subjects    -- `HeadSubjectSampler.sample(seed, shape, spacing, modalities)`: one subject, several modalities
    head_views  -- heads as contrastive views for encoder pretraining (`PretrainConfig.label_dir`, `p_head`)
"""

from multimodalgen.synthesis.config import ENGINE_VERSION

__all__ = ["ENGINE_VERSION"]
