"""Parameter-efficient adapters (PEFT style) for frozen Conv3d / Linear layers.

Submodules (import them directly; this file stays light):
    config  -- `AdapterConfig` (method "mor" or "lora", ranks, router kind, target name patterns)
    layers  -- `MoRLayer`: a frozen base layer plus a mixture of low-rank experts and a bypass router
    inject  -- `inject_adapters`, `strip_adapters`, `merge_adapters`, `unmerge_adapters`, `adapter_state_dict`
    io      -- `save_adapter`, `load_adapter` (safetensors + adapter_config.json, base model / label set checks)
"""
