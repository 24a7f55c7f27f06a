"""The few-shot effect's options panel, built from the real `SegmentEditorEffect` code in PySide6 (offscreen,
PythonQt-style shims; see render_effect.py): widgets exist, the options reach the effect logic, the support-case
controls show only in support mode, Apply/Cancel follow the state, and the panel renders."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets")


@pytest.fixture()
def built(monkeypatch):
    for name in ("qt", "slicer", "vtk", "SegmentEditorEffects", "vtkSegmentationCorePython"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import render_effect

    host, effect = render_effect.build()
    yield host, effect
    for name in ("qt", "slicer", "vtk", "SegmentEditorEffects", "vtkSegmentationCorePython"):
        sys.modules.pop(name, None)
    host.deleteLater()


def test_options_reach_the_logic_and_follow_the_mode(built):
    host, effect = built
    logic = effect.fewshot
    assert logic is not None and logic.mode == "slices" and logic.autoUpdate and logic.refine
    assert not effect.supportFrame.isVisibleTo(host)
    assert not effect.applyButton.isEnabled() and not effect.cancelButton.isEnabled()  # idle: nothing to apply
    effect.supportRadio.setChecked(True)  # toggles slicesRadio off -> updateMRMLFromGUI
    assert logic.mode == "support" and effect.supportFrame.isVisibleTo(host)
    assert not effect.autoUpdateCheckBox.isEnabled()  # support mode runs on Update only
    effect.slicesRadio.setChecked(True)
    effect.autoUpdateCheckBox.setChecked(False)
    effect.refineCheckBox.setChecked(False)
    assert logic.mode == "slices" and not logic.autoUpdate and not logic.refine
    assert not effect.supportFrame.isVisibleTo(host)
    effect.onStatus("preview in 1.00 s")
    assert effect.statusLabel.text() == "preview in 1.00 s"


def test_effect_panel_renders(tmp_path, built):
    import render_effect

    out = render_effect.render(tmp_path / "effect.png")
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert image.width() >= 300 and image.height() >= 120
    assert len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 5
