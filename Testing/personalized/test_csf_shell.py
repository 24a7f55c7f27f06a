"""The CSF shell (`personalized.csf_shell`): skull within `shell_mm` of grey/white matter becomes CSF, in mm on
anisotropic grids; nothing else moves; off when 0 or when the labels lack the classes."""

import numpy as np
import pytest
import torch

from multimodalgen.personalized.csf_shell import close_csf_shell

NAMES = ("background", "grey matter", "white matter", "cerebrospinal fluid", "skull", "soft tissue")


def _layers(spacing_k: float = 1.0):
    """Along k: white (k < 4), grey (4..5), skull (6..11), soft tissue (12..13), background (14..15); 4 x 4 x 16.
    Returns one-hot-ish probabilities `(6, 4, 4, 16)` (winner .7, the rest shared) and the label array."""
    labels = np.zeros((4, 4, 16), np.int64)
    labels[..., :4], labels[..., 4:6], labels[..., 6:12], labels[..., 12:14] = 2, 1, 4, 5
    probs = np.full((6,) + labels.shape, 0.06, np.float32)
    for c in range(6):
        probs[c][labels == c] = 0.7
    return torch.from_numpy(probs), labels


def test_skull_within_the_shell_becomes_csf_and_nothing_else_moves():
    probs, labels = _layers()
    out, text = close_csf_shell(probs, NAMES, (1.0, 1.0, 1.0), 2.0)
    winner = out.argmax(0).numpy()
    assert (winner[..., 6:8] == 3).all()                           # skull 1 and 2 mm from grey -> CSF
    assert (winner[..., 8:12] == 4).all()                          # farther skull kept
    assert (winner[..., :6] == labels[..., :6]).all() and (winner[..., 12:] == labels[..., 12:]).all()
    torch.testing.assert_close(out.sum(0), probs.sum(0))           # probability moved, not made up
    assert "32 skull voxels" in text and "2 mm" in text


def test_the_shell_is_measured_in_mm_on_anisotropic_grids():
    probs, _ = _layers()
    out, _ = close_csf_shell(probs, NAMES, (1.0, 1.0, 3.0), 2.0)   # 3 mm steps along k: the first skull voxel is 3 mm away
    assert (out.argmax(0).numpy()[..., 6:] != 3).all()
    out, _ = close_csf_shell(probs, NAMES, (1.0, 1.0, 3.0), 6.0)   # 3 and 6 mm
    winner = out.argmax(0).numpy()
    assert (winner[..., 6:8] == 3).all() and (winner[..., 8:12] == 4).all()


@pytest.mark.parametrize("names,shell", [(NAMES, 0.0), (("background", "grey matter", "white matter",
                                                            "cerebrospinal fluid", "tumour", "soft tissue"), 3.0)])
def test_off_or_without_the_classes_it_is_a_no_op(names, shell):
    probs, _ = _layers()
    out, text = close_csf_shell(probs, names, (1.0, 1.0, 1.0), shell)
    assert out is probs and text == ""


def test_config_refuses_a_negative_or_huge_shell():
    from multimodalgen.personalized.config import PersonalizedConfig

    assert PersonalizedConfig(csf_shell_mm=3.0).csf_shell_mm == 3.0
    for bad in (-1.0, 50.0):
        with pytest.raises(ValueError, match="csf_shell_mm"):
            PersonalizedConfig(csf_shell_mm=bad)
