"""Channel groups of a shipped encoder: which of its output channels serve which use.

A grown encoder (encoder-v4: `frozen_channels` kept from its parent, the last `role_channels` trained on tissue
roles) has two groups with different jobs, and an engine should read the one it needs:

    correspondence  channels [0, frozen_channels): the parent's cross-contrast voxel matching (registration)
    tissue          the last role_channels: contrast-invariant grey/white/CSF roles (segmentation)
    all             every channel (the only group of an encoder that was not grown)

The groups are read from the encoder folder's `pretrain_config.json` (the training config is the one source: no
second copy to drift). An engine names its encoder as `NAME` or `NAME:GROUP` (e.g. `encoder-v4:correspondence`);
`NAME` alone means `all`.
"""

from __future__ import annotations

import json
from pathlib import Path

CHANNEL_GROUPS = ("all", "correspondence", "tissue")


def parse_encoder_spec(spec: str | None) -> tuple[str | None, str]:
    """`"NAME[:GROUP]"` -> `(NAME or None for the default encoder, GROUP)`; UserInputError on an unknown group."""
    from multimodalgen.errors import UserInputError

    if not spec:
        return None, "all"
    name, _, group = str(spec).partition(":")
    group = group or "all"
    if group not in CHANNEL_GROUPS:
        raise UserInputError("unknown encoder channel group", expected=" | ".join(CHANNEL_GROUPS), got=repr(group),
                             fix=f"write the encoder as NAME or NAME:GROUP, e.g. {name or 'encoder-v4'}:correspondence")
    return (name or None), group


def channel_groups(folder: str | Path, out_channels: int) -> dict[str, tuple[int, int]]:
    """`{group: (first, stop)}` channel ranges of the encoder in `folder` with `out_channels` outputs."""
    groups = {"all": (0, int(out_channels))}
    path = Path(folder) / "pretrain_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    frozen, roles = int(cfg.get("frozen_channels") or 0), int(cfg.get("role_channels") or 0)
    if 0 < frozen < out_channels:
        groups["correspondence"] = (0, frozen)
    if 0 < roles < out_channels:
        groups["tissue"] = (out_channels - roles, out_channels)
    return groups


def channel_range(folder: str | Path, out_channels: int, group: str) -> tuple[int, int]:
    """The `(first, stop)` channels of `group`; UserInputError when this encoder has no such group."""
    from multimodalgen.errors import UserInputError

    groups = channel_groups(folder, out_channels)
    if group not in groups:
        raise UserInputError(f"encoder {Path(folder).name} has no {group!r} channel group",
                             expected=" | ".join(groups), got=repr(group),
                             fix="use a grown encoder (e.g. encoder-v4) for channel groups, or the group 'all'")
    return groups[group]


def spec_channels(spec: str | None, out_channels: int) -> tuple[int, int]:
    """The `(first, stop)` channels that the encoder spec "NAME[:GROUP]" selects from an encoder with `out_channels`
    outputs (the group "all" needs no folder; the others are read from NAME's folder, see `channel_range`)."""
    from multimodalgen.encoder.weights import encoder_dir

    name, group = parse_encoder_spec(spec)
    return (0, int(out_channels)) if group == "all" else channel_range(encoder_dir(name), out_channels, group)
