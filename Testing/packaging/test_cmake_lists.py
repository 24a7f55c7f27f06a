"""Packaging: every module file is listed in MultiModalGen/CMakeLists.txt, every listed file exists, the Slicer
self-tests are registered for ctest, and the extension metadata agrees between CMakeLists.txt and the .s4ext."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cmake_file_list as cfl  # noqa: E402

ROOT = cfl.ROOT


def test_every_module_file_is_listed_and_every_listed_file_exists():
    listed = cfl.listed_files(cfl.CMAKE_FILE.read_text())
    files = cfl.module_files()
    missing = sorted(set(files) - set(listed))
    assert not missing, ("not in MultiModalGen/CMakeLists.txt (run python Testing/packaging/cmake_file_list.py): "
                         f"{missing}")
    stale = sorted(f for f in listed if not (cfl.MODULE_DIR / f).is_file())
    assert not stale, f"listed but missing on disk: {stale}"
    assert len(listed) == len(set(listed))


def test_generated_block_is_up_to_date_and_classified():
    text = cfl.CMAKE_FILE.read_text()
    assert cfl.updated_text(text, cfl.module_files()) == text
    scripts = text.split("set(MODULE_PYTHON_SCRIPTS", 1)[1].split(")", 1)[0].split()
    resources = text.split("set(MODULE_PYTHON_RESOURCES", 1)[1].split(")", 1)[0].split()
    assert all(f.endswith(".py") for f in scripts) and not any(f.endswith(".py") for f in resources)
    for required in ("MultiModalGen.py", "MultiModalGenLib/bridge.py", "multimodalgen/worker/runner.py",
                     "multimodalgen/server/app.py"):
        assert required in scripts
    for required in ("Resources/UI/MultiModalGen.ui", "Resources/Icons/MultiModalGen.png"):
        assert required in resources
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_lister_ignores_build_artefacts(tmp_path):
    for rel in ("A.py", "Lib/b.py", "Lib/__pycache__/b.cpython-311.pyc", "pkg.egg-info/PKG-INFO", "Testing/x.py",
                "Resources/w.safetensors", ".hidden", "CMakeLists.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert cfl.module_files(tmp_path) == ["A.py", "Lib/b.py", "Resources/w.safetensors"]


def test_slicer_self_tests_registered_for_ctest():
    folder = cfl.MODULE_DIR / "Testing" / "Python"
    registered = re.findall(r"slicer_add_python_unittest\(SCRIPT\s+(\S+?)\)", (folder / "CMakeLists.txt").read_text())
    scripts = sorted(p.name for p in folder.glob("*.py"))
    assert scripts and sorted(registered) == scripts
    assert "add_subdirectory(Python)" in (cfl.MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()


def cmake_metadata() -> dict[str, str]:
    text = (ROOT / "CMakeLists.txt").read_text()
    return dict(re.findall(r'set\(EXTENSION_(\w+) "([^"]*)"\)', text))


def s4ext_metadata() -> dict[str, str]:
    out = {}
    for line in (ROOT / "MultiModalGen.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_extension_metadata_consistent():
    cm, s4 = cmake_metadata(), s4ext_metadata()
    pairs = {"HOMEPAGE": "homepage", "CATEGORY": "category", "CONTRIBUTORS": "contributors",
             "DESCRIPTION": "description", "ICONURL": "iconurl", "SCREENSHOTURLS": "screenshoturls",
             "DEPENDS": "depends"}
    for cmake_key, s4_key in pairs.items():
        assert cm[cmake_key] == s4[s4_key], cmake_key
    assert cm["DEPENDS"] == "PyTorch" and cm["HOMEPAGE"] == "https://github.com/multimodalgen/SlicerMultiModalGen"
    text = (ROOT / "CMakeLists.txt").read_text()
    assert "find_package(Slicer REQUIRED)" in text and "add_subdirectory(MultiModalGen)" in text
    # the icon and screenshot the URLs point to are in the repository at those paths
    for url in [cm["ICONURL"], *cm["SCREENSHOTURLS"].split()]:
        assert (ROOT / url.split("/main/", 1)[1]).is_file(), url
