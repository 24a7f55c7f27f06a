"""Load MultiModalGen.py and the effect file over stub `slicer`/`qt`/`vtk` modules (no Slicer here): loading imports
nothing heavy, the module hooks `startupCompleted()`, and that hook registers the few-shot Segment Editor effect
(the scripted-effect source file it names exists and defines the effect) and the Sample Data sources."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "MultiModalGen"

STUBS = textwrap.dedent('''
    import sys, types
    class Anything:
        """Absorbs any attribute access / call / subclassing (a stand-in for Slicer's Qt and MRML classes)."""
        def __init__(self, *a, **k): pass
        def __getattr__(self, name): return Anything()
        def __call__(self, *a, **k): return Anything()
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__getattr__ = lambda attr: Anything
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m
    connected = []
    class App:
        def connect(self, signal, slot): connected.append((signal, slot))
    slicer = module("slicer", app=App())
    module("slicer.i18n", tr=lambda s: s, translate=lambda c, s: s)
    module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls, Choice=lambda v: v)
    bases = {name: type(name, (), {"__init__": lambda self, parent=None: setattr(self, "parent", parent)})
             for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                          "ScriptedLoadableModuleWidget", "VTKObservationMixin")}
    module("slicer.ScriptedLoadableModule", **{k: v for k, v in bases.items() if k != "VTKObservationMixin"})
    module("slicer.util", VTKObservationMixin=bases["VTKObservationMixin"])
    module("qt"); module("vtk"); module("ctk")
    registered, sources = [], []
    class ScriptedEffect:
        def __init__(self, parent): pass
        def setPythonSource(self, path): self.path = path
        def self(self): return types.SimpleNamespace(register=lambda: registered.append(self.path))
    module("qSlicerSegmentationsEditorEffectsPythonQt", qSlicerSegmentEditorScriptedEffect=ScriptedEffect)
    module("SampleData", SampleDataLogic=types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kw: sources.append(kw)))
''')


def test_module_loads_light_and_registers_effect_and_sample_data():
    code = STUBS + textwrap.dedent(f'''
        import importlib.util, types
        spec = importlib.util.spec_from_file_location("MultiModalGen", {str(MODULE_DIR / "MultiModalGen.py")!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        heavy = [m for m in ("torch", "numpy", "scipy", "nibabel", "SimpleITK", "multimodalgen.io") if m in sys.modules]
        print("HEAVY", heavy)
        mod.MultiModalGen(types.SimpleNamespace())
        (signal, hook), = connected
        print("SIGNAL", signal)
        hook()
        print("EFFECT", registered)
        print("SAMPLES", len(sources), sorted(sources[0]))
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=str(MODULE_DIR), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["HEAVY"] == "[]"
    assert lines["SIGNAL"] == "startupCompleted()"
    effect = Path(eval(lines["EFFECT"])[0])
    assert effect == MODULE_DIR / "SegmentEditorMultiModalGenLib" / "SegmentEditorEffect.py" and effect.is_file()
    assert lines["SAMPLES"].startswith("2 ") and "thumbnailFileName" in lines["SAMPLES"]


def test_effect_file_defines_the_scripted_effect():
    code = STUBS + textwrap.dedent(f'''
        import types
        class Abstract:
            def __init__(self, scriptedEffect): self.scriptedEffect = scriptedEffect
        module("SegmentEditorEffects", AbstractScriptedSegmentEditorEffect=Abstract)
        spec = importlib.util.spec_from_file_location("effect", {str(MODULE_DIR / "SegmentEditorMultiModalGenLib"
                                                                     / "SegmentEditorEffect.py")!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        scripted = types.SimpleNamespace()
        effect = mod.SegmentEditorEffect(scripted)
        print("NAME", scripted.name, scripted.perSegment, scripted.requireSegments)
        print("METHODS", sorted(m for m in ("clone", "icon", "helpText", "setupOptionsFrame", "activate",
                                           "deactivate", "updateGUIFromMRML", "updateMRMLFromGUI")
                               if callable(getattr(effect, m, None))))
        print("HEAVY", [m for m in ("torch", "numpy") if m in sys.modules])
    ''').replace("import types\n", "import types, importlib.util\n", 1)
    out = subprocess.run([sys.executable, "-c", code], cwd=str(MODULE_DIR), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["NAME"] == "MultiModalGen few-shot False True"
    assert len(eval(lines["METHODS"])) == 8 and lines["HEAVY"] == "[]"
