"""Personalized multimodal segmentation: any subset of a patient's modalities -> one personalized invariant
representation X_h -> segmentation (Tan et al. 2024 X_h, Early Intervention, UMD MR-Pretrain / TD-Calib / GM-Coord).

Submodules (import directly; this file stays light except for the public entry points below):
    config     -- `PersonalizedConfig` (modalities, labels, encoder architecture, prior, early intervention)
    model      -- `PersonalizedNet`: shared encoder + modality embedding -> masked mean + prior -> X_h -> head, g_m
    synthetic  -- synth-1 same-subject multi-contrast phantoms rendered with fixed per-modality mappings g_m
    head_data  -- synth-2 head subjects (real anatomy, T1/T2/PD/FLAIR/CT/PET) normalised as at inference
    losses     -- segmentation, cross-modal reconstruction, invariance, prior, MR-Pretrain, GM-Coord
    train      -- (pre)training on synthetic subjects, resumable
    ttp        -- test-time personalization (label-free, on the patient's own modalities)
    weights    -- save / load a personalized model folder (config.json + fp16 safetensors)
    cases      -- CASES.csv reading and validation
    finetune   -- adapter fine-tuning on a site's labelled cases (TD-Calib, validation split, early stopping)
    inference  -- `segment_volumes(images, adapter, device, progress)`: named, SNOMED-coded segments
    atlas      -- a user-supplied tissue atlas (SPM TPM order): read, placed by affine registration, checked, fused
    sliding    -- whole-volume or sliding-window logits on the working grid (`PersonalizedConfig.patch_size`)
    cli        -- verbs `finetune` and `segment`
"""

from __future__ import annotations


def segment_volumes(*args, **kwargs):
    """See `multimodalgen.personalized.inference.segment_volumes`."""
    from multimodalgen.personalized.inference import segment_volumes as _segment

    return _segment(*args, **kwargs)
