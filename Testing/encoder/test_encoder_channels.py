"""Channel groups of a shipped encoder (`multimodalgen.encoder.channels`) and their use by registration."""

from __future__ import annotations

import json

import pytest


def test_grown_encoder_groups_come_from_its_training_config(tmp_path):
    from multimodalgen.encoder.channels import channel_groups, channel_range, parse_encoder_spec
    from multimodalgen.errors import UserInputError

    (tmp_path / "pretrain_config.json").write_text(json.dumps({"frozen_channels": 12, "role_channels": 4}))
    assert channel_groups(tmp_path, 16) == {"all": (0, 16), "correspondence": (0, 12), "tissue": (12, 16)}
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pretrain_config.json").write_text(json.dumps({"steps": 10}))
    assert channel_groups(plain, 16) == {"all": (0, 16)}
    with pytest.raises(UserInputError, match="no 'tissue' channel group"):
        channel_range(plain, 16, "tissue")
    assert parse_encoder_spec("encoder-v4:correspondence") == ("encoder-v4", "correspondence")
    assert parse_encoder_spec("encoder-v2") == ("encoder-v2", "all") and parse_encoder_spec(None) == (None, "all")
    with pytest.raises(UserInputError, match="unknown encoder channel group"):
        parse_encoder_spec("encoder-v4:bones")


def test_registration_features_read_only_the_chosen_group_of_the_shipped_v4():
    import torch

    from multimodalgen.registration.features import compute_features, load_encoder_if_shipped

    try:
        encoder = load_encoder_if_shipped("cpu", "encoder-v4:correspondence")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"encoder-v4 not shipped: {exc}")
    assert encoder[1] == (0, 12)
    image = torch.rand(1, 1, 20, 18, 16)
    corr = compute_features(image, kind="mind+encoder", encoder=encoder)
    full = compute_features(image, kind="mind+encoder", encoder=(encoder[0], (0, 16)))
    assert corr.shape == (1, 24, 20, 18, 16) and full.shape == (1, 28, 20, 18, 16)
    torch.testing.assert_close(corr, full[:, :24])           # the same channels, not a different computation
    tissue = load_encoder_if_shipped("cpu", "encoder-v4:tissue")
    assert tissue[1] == (12, 16)
