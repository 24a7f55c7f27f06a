"""Build the few-shot effect's options panel from its real code (`SegmentEditorEffect.setupOptionsFrame`) in PySide6,
offscreen, and save a PNG (README screenshot) - outside Slicer.

Slicer's Python Qt (PythonQt) differs from PySide6 in two ways the effect uses: Qt properties are attributes
(`button.enabled = False`, `checkBox.checked`) and signals connect by signature (`w.connect("clicked()", slot)`).
`PythonQtStyle` adds both to PySide6 widget classes. Slicer's MRML widgets become look-alike combo boxes, and the
scripted effect's `addOptionsWidget` / `addLabeledOptionsWidget` (qSlicerSegmentEditorAbstractEffect) lay the widgets
out in a form, as the Segment Editor's options frame does.

    QT_QPA_PLATFORM=offscreen python Testing/slicer/render_effect.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "Resources" / "Screenshots" / "MultiModalGen-fewshot-effect.png"
EFFECT = ROOT / "MultiModalGen" / "SegmentEditorMultiModalGenLib" / "SegmentEditorEffect.py"


def pythonqt_style(cls, extra: dict | None = None):
    """A subclass of a PySide6 class with PythonQt's property attributes and string-signature connect (plus the
    `extra` methods: subclassing the result again would lose `connect` to Shiboken's built-in one)."""

    class PythonQtStyle(cls):
        def __setattr__(self, name, value):
            setter = "set" + name[:1].upper() + name[1:]
            if not name.startswith("_") and hasattr(cls, setter):
                getattr(self, setter)(value)
            else:
                cls.__setattr__(self, name, value)

        def __getattr__(self, name):
            for getter in ("is" + name[:1].upper() + name[1:], "get" + name[:1].upper() + name[1:]):
                if hasattr(cls, getter):
                    return getattr(self, getter)()
            raise AttributeError(name)

        def connect(self, signature, slot):
            name = signature.split("(")[0]
            if name in dir(cls):  # a Qt signal of the class; MRML-only signals have no source here
                getattr(self, name).connect(slot)

    for name, value in (extra or {}).items():
        setattr(PythonQtStyle, name, value)
    PythonQtStyle.__name__ = cls.__name__
    return PythonQtStyle


def install_modules(host_layout):
    """`qt`, `slicer`, `vtk`, `SegmentEditorEffects` and the segmentation-core modules the effect file imports."""
    from PySide6 import QtCore, QtGui, QtWidgets

    qt = types.ModuleType("qt")
    for name in ("QRadioButton", "QCheckBox", "QLabel", "QPushButton", "QFrame", "QWidget", "QComboBox"):
        setattr(qt, name, pythonqt_style(getattr(QtWidgets, name)))
    qt.QHBoxLayout, qt.QFormLayout = QtWidgets.QHBoxLayout, QtWidgets.QFormLayout
    qt.QTimer, qt.QIcon = QtCore.QTimer, QtGui.QIcon

    def mrml_combo(text="None"):
        """qMRMLNodeComboBox / qMRMLCheckableNodeComboBox look-alike (no scene here)."""
        combo = MRMLCombo()
        combo.addItem(text)
        return combo

    MRMLCombo = pythonqt_style(QtWidgets.QComboBox, {"setMRMLScene": lambda self, scene: None,
                                                     "currentNode": lambda self: None,
                                                     "checkedNodes": lambda self: []})

    slicer = types.ModuleType("slicer")
    slicer.qMRMLNodeComboBox = mrml_combo
    slicer.qMRMLCheckableNodeComboBox = lambda: mrml_combo("MR-T2 (aligned)")
    slicer.mrmlScene = None
    slicer.util = types.SimpleNamespace(getModuleLogic=lambda name: None, tryWithErrorDisplay=None)
    slicer.vtkOrientedImageData = object
    slicer.qSlicerSegmentEditorAbstractEffect = types.SimpleNamespace(ModificationModeSet=1)
    vtk = types.ModuleType("vtk")
    vtk.mutable = str

    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

    effects = types.ModuleType("SegmentEditorEffects")
    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    core = types.ModuleType("vtkSegmentationCorePython")
    core.vtkSegmentation = types.SimpleNamespace(SegmentModified=1, SegmentAdded=2, SegmentRemoved=3)
    sys.modules.update({"qt": qt, "slicer": slicer, "vtk": vtk, "SegmentEditorEffects": effects,
                        "vtkSegmentationCorePython": core})

    return OptionsHost(host_layout)


class OptionsHost:
    """The options-frame part of qSlicerSegmentEditorScriptedEffect (`addOptionsWidget`, `addLabeledOptionsWidget`:
    widgets and layouts go into one form layout); `parameterSetNode()` is None unless `scripted` (e.g. the
    `segment_editor_standins.ScriptedEffect`) provides the editor side."""

    def __init__(self, layout, scripted=None):
        self.layout, self.scripted = layout, scripted

    def addOptionsWidget(self, widget):
        self.layout.addRow(widget)

    def addLabeledOptionsWidget(self, label, widget):
        self.layout.addRow(label, widget)

    def __getattr__(self, name):
        if self.scripted is None:
            if name == "parameterSetNode":
                return lambda: None
            raise AttributeError(name)
        return getattr(self.scripted, name)


def build(width: int = 420, scripted=None, configure=None):
    """(host widget, effect instance) with the effect's options panel set up and synchronised once.

    scripted: the editor side of the scripted effect (parameterSetNode, saveStateForUndo, modifySegmentByLabelmap);
    configure(modules): called with the stub modules dict before the effect file loads (tests replace `slicer`
    attributes there with stand-ins)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT / "MultiModalGen"))
    from PySide6.QtWidgets import QApplication, QFormLayout, QGroupBox

    app = QApplication.instance() or QApplication([])
    host = QGroupBox("MultiModalGen few-shot")
    layout = QFormLayout(host)
    host_side = install_modules(layout)
    host_side.scripted = scripted
    if configure is not None:
        configure(sys.modules)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mmg_fewshot_effect", EFFECT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    effect = module.SegmentEditorEffect(host_side)
    effect.setupOptionsFrame()
    effect.updateMRMLFromGUI()
    host.resize(width, host.sizeHint().height())
    app.processEvents()
    return host, effect


def render(out: Path = DEFAULT_OUT) -> Path:
    host, effect = build()
    # the status line as the effect writes it (numbers of a measured stroke, benchmarks/slicer/README.md, run A)
    effect.onStatus("quick preview in 1.93 s, engine 1.36 s; Apply to accept, Cancel to discard")
    host.adjustSize()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not host.grab().save(str(out)):
        raise RuntimeError(f"could not write {out}")
    return out


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
