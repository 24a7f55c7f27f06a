"""Every module file compiles without Slicer; the Slicer-side Lib imports without slicer/qt/torch; the backend
never imports Slicer, Qt, CTK or VTK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "MultiModalGen"
PY_FILES = sorted(p for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts and ".egg-info" not in str(p))


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(MODULE_DIR)))
def test_compiles(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)


def test_lib_imports_without_slicer_qt_or_torch():
    code = ("import sys; sys.modules['slicer'] = None; sys.modules['qt'] = None; sys.modules['vtk'] = None\n"
            "import MultiModalGenLib.bridge, MultiModalGenLib.worker_client, MultiModalGenLib.parameters\n"
            "import MultiModalGenLib.dependencies, MultiModalGenLib.runner, MultiModalGenLib.actions\n"
            "import multimodalgen.worker.runner, multimodalgen.worker.process, multimodalgen.server.manager\n"
            "import MultiModalGenLib.segment_info, MultiModalGenLib.sample_data, MultiModalGenLib.startup\n"
            "import SegmentEditorMultiModalGenLib.effect_logic, SegmentEditorMultiModalGenLib.masking\n"
            "import SegmentEditorMultiModalGenLib.result_fields, SegmentEditorMultiModalGenLib.effect_inputs\n"
            "import SegmentEditorMultiModalGenLib.exchange\n"
            "heavy = [m for m in ('torch', 'fastapi', 'SimpleITK', 'scipy', 'nibabel') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(MODULE_DIR), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_backend_never_imports_slicer_or_qt():
    forbidden = {"slicer", "qt", "ctk", "vtk", "PythonQt", "MultiModalGenLib"}
    offenders = {str(p.relative_to(MODULE_DIR)): sorted(imported_modules(p) & forbidden)
                 for p in (MODULE_DIR / "multimodalgen").rglob("*.py") if imported_modules(p) & forbidden}
    assert not offenders, offenders


def test_module_file_defines_the_slicer_classes():
    tree = ast.parse((MODULE_DIR / "MultiModalGen.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for name in ("MultiModalGen", "MultiModalGenParameterNode", "MultiModalGenWidget", "MultiModalGenLogic",
                 "MultiModalGenTest"):
        assert name in classes, name
    decorators = [ast.unparse(d) for d in classes["MultiModalGenParameterNode"].decorator_list]
    assert decorators == ["parameterNodeWrapper"]
    # every Widget action handler goes through tryWithErrorDisplay
    widget = classes["MultiModalGenWidget"]
    handlers = [f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name.startswith("on")
                and f.name not in ("onTaskEvent", "onTaskFinished", "onRegistrationFinished", "onSegmentFinished",
                                   "onSceneStartClose", "onSceneEndClose")]
    assert len(handlers) >= 10
    for f in handlers:
        assert "tryWithErrorDisplay" in ast.unparse(f), f"{f.name} does not use slicer.util.tryWithErrorDisplay"
