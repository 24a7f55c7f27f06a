"""The registration overlay's caption carries the case and its numbers (issue 25)."""

from __future__ import annotations

from multimodalgen.registration.api import overlay_caption


def test_caption_names_case_and_numbers():
    text = overlay_caption({"similarity_before": 0.0975, "similarity_after": 0.0612,
                            "jacobian": {"nonpositive_fraction": 0.0004}, "dice": {"dice_1": 0.8, "dice_2": 0.9, "dice_mean": 0.85}},
                           "t1.nii.gz", "ct.nii.gz")
    assert text.startswith("Case ct.nii.gz (moving) onto t1.nii.gz (fixed)")
    assert "0.098 -> 0.061" in text and "folding 0.04 %" in text and "mean Dice 0.850" in text


def test_caption_without_numbers_is_still_a_sentence():
    assert overlay_caption({}, "f.nii", "m.nii").endswith("after registration.")
