"""Render MultiModalGen.ui offscreen with PySide6 to a PNG (README screenshot), outside Slicer.

Slicer's own widgets are replaced by look-alike Qt widgets (collapsible sections -> group boxes, node selectors
-> combo boxes showing a sample node name) so the picture shows the real layout, labels and buttons.

    QT_QPA_PLATFORM=offscreen python Testing/slicer/render_ui.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "MultiModalGen" / "Resources" / "UI" / "MultiModalGen.ui"
DEFAULT_OUT = ROOT / "Resources" / "Screenshots" / "MultiModalGen-panel.png"

SAMPLE_NODES = {
    "fixedVolumeSelector": "CT (fixed)", "movingVolumeSelector": "MR-T1 (moving)",
    "outputTransformSelector": "Create new transform", "outputVolumeSelector": "None (transform only)",
    "t1VolumeSelector": "MR-T1", "t2VolumeSelector": "MR-T2",
    "outputSegmentationSelector": "Create new segmentation",
}


def render(out: Path = DEFAULT_OUT, width: int = 440) -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QFile
    from PySide6.QtWidgets import QApplication, QComboBox, QGroupBox, QLineEdit, QVBoxLayout, QWidget
    from PySide6.QtUiTools import QUiLoader

    class StandInLoader(QUiLoader):
        def createWidget(self, className, parent=None, name=""):
            if className == "ctkCollapsibleButton":
                widget = QGroupBox(parent)
            elif className in ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget"):
                widget = QComboBox(parent)
                widget.addItem(SAMPLE_NODES.get(name, "None"))
            elif className == "ctkPathLineEdit":
                widget = QLineEdit(parent)
                widget.setText("~/.MultiModalGen" if "dataFolder" in name else "")
            elif className == "qMRMLWidget":
                widget = QWidget(parent)
            else:
                return super().createWidget(className, parent, name)
            widget.setObjectName(name)
            return widget

    app = QApplication.instance() or QApplication([])
    file = QFile(str(UI))
    file.open(QFile.ReadOnly)
    panel = StandInLoader().load(file)
    file.close()
    for box in panel.findChildren(QGroupBox):
        box.setTitle(str(box.property("text") or ""))
        if box.property("collapsed"):
            for child in box.findChildren(QWidget):
                child.hide()
    panel.findChild(QWidget, "registrationModeComboBox").setCurrentText("deformable")
    panel.findChild(QWidget, "adapterListWidget").addItems(["site-adapter (T1, T2, FLAIR)", "ct-liver-2026"])
    panel.findChild(QWidget, "progressBar").setValue(42)
    panel.findChild(QWidget, "statusLabel").setText("deformable: level 2/3 (ConvexAdam)")
    panel.findChild(QWidget, "logTextEdit").setMaximumHeight(60)
    host = QWidget()
    layout = QVBoxLayout(host)
    layout.addWidget(panel)
    host.resize(width, 100)
    host.adjustSize()
    host.resize(width, host.sizeHint().height())
    out.parent.mkdir(parents=True, exist_ok=True)
    pixmap = host.grab()
    if not pixmap.save(str(out)):
        raise RuntimeError(f"could not write {out}")
    app.processEvents()
    return out


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
