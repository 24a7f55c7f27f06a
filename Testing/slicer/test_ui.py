"""The module's .ui loads in real Qt (PySide6, offscreen; Slicer widgets fall back to their declared base class)
and has every widget the module code names, bound to every parameter-node field."""

from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "MultiModalGen" / "Resources" / "UI" / "MultiModalGen.ui"
MODULE = ROOT / "MultiModalGen" / "MultiModalGen.py"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
QtCore = pytest.importorskip("PySide6.QtCore")


@pytest.fixture(scope="module")
def loaded():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    file = QtCore.QFile(str(UI))
    assert file.open(QtCore.QFile.ReadOnly)
    loader = QtUiTools.QUiLoader()
    widget = loader.load(file)
    file.close()
    assert widget is not None, loader.errorString()
    yield widget
    widget.deleteLater()
    app.processEvents()


def module_tree():
    return ast.parse(MODULE.read_text())


def names_used_by_module() -> set[str]:
    """Every `self.ui.X` / `ui.X` attribute in MultiModalGen.py."""
    names = set()
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Attribute):
            value = node.value
            if (isinstance(value, ast.Attribute) and value.attr == "ui" and isinstance(value.value, ast.Name)
                    and value.value.id == "self") or (isinstance(value, ast.Name) and value.id == "ui"):
                names.add(node.attr)
    return names


def parameter_fields() -> dict[str, ast.AST]:
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == "MultiModalGenParameterNode":
            return {item.target.id: item for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError("no MultiModalGenParameterNode class")


def test_every_widget_named_by_the_module_exists(loaded):
    used = names_used_by_module()
    assert len(used) >= 25
    missing = sorted(n for n in used if loaded.findChild(QtCore.QObject, n) is None)
    assert not missing, f"widgets used in MultiModalGen.py but absent from the .ui: {missing}"


def test_parameter_fields_and_gui_bindings_match(loaded):
    bound = {}
    for obj in loaded.findChildren(QtCore.QObject):
        name = obj.property("SlicerParameterName")
        if name:
            assert name not in bound, f"two widgets bound to {name}"
            bound[name] = obj
    fields = parameter_fields()
    assert set(bound) == set(fields), (sorted(set(fields) - set(bound)), sorted(set(bound) - set(fields)))
    # Choice fields: the combo box offers exactly the allowed values, in order
    for name, node in fields.items():
        text = ast.unparse(node.annotation)
        if "Choice(" in text:
            choices = ast.literal_eval(text.split("Choice(")[1].rsplit(")", 2)[0])
            combo = bound[name]
            assert isinstance(combo, QtWidgets.QComboBox)
            assert [combo.itemText(i) for i in range(combo.count())] == choices


def test_sections_progress_status_cancel(loaded):
    titles = [w.property("text") for w in loaded.findChildren(QtWidgets.QWidget)
              if w.objectName().endswith("CollapsibleButton")]
    assert titles == ["Registration", "Few-shot segmentation", "Personalized segmentation", "Adapters", "Settings"]
    assert isinstance(loaded.findChild(QtWidgets.QProgressBar, "progressBar"), QtWidgets.QProgressBar)
    assert loaded.findChild(QtWidgets.QLabel, "statusLabel") is not None
    assert loaded.findChild(QtWidgets.QPushButton, "cancelButton").text() == "Cancel"
    # few-shot lives in the Segment Editor effect; the panel section points there
    assert "Segment Editor" in loaded.findChild(QtWidgets.QPushButton, "fewshotOpenEffectButton").text()
    assert loaded.findChild(QtWidgets.QPushButton, "fewshotPreviewButton") is None


def test_slicer_widgets_declared_and_connected_to_the_scene():
    tree = ET.parse(UI)
    declared = {c.findtext("class"): c.findtext("extends") for c in tree.iter("customwidget")}
    used = {w.get("class") for w in tree.iter("widget")}
    qt_classes = {c for c in used if c.startswith("Q")}
    assert used - qt_classes <= set(declared), sorted(used - qt_classes - set(declared))
    assert all(declared[c] in ("QWidget", "qMRMLWidget") for c in declared)
    connected = {c.findtext("receiver") for c in tree.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in tree.iter("widget") if w.get("class") in ("qMRMLNodeComboBox",
                                                                            "qMRMLSegmentSelectorWidget")}
    assert mrml and mrml == connected


def test_panel_renders_to_png(tmp_path, loaded):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from render_ui import render

    out = render(tmp_path / "panel.png")
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert image.width() >= 400 and image.height() >= 800
    colours = {image.pixel(x, y) for x in range(0, image.width(), 17) for y in range(0, image.height(), 17)}
    assert len(colours) > 5  # not a blank picture


def test_transform_selector_shows_linear_and_grid_transforms():
    """The output transform is a vtkMRMLLinearTransformNode or vtkMRMLGridTransformNode: subclasses must show."""
    tree = ET.parse(UI)
    widget = next(w for w in tree.iter("widget") if w.get("name") == "outputTransformSelector")
    props = {p.get("name"): p for p in widget.iter("property")}
    assert props["showChildNodeTypes"].findtext("bool") == "true"
    assert [s.text for s in props["nodeTypes"].iter("string")] == ["vtkMRMLTransformNode"]
