"""Keep MultiModalGen/CMakeLists.txt listing EVERY file of the module folder (files left out of SCRIPTS/RESOURCES
are missing from the Extensions Manager package).

    python Testing/packaging/cmake_file_list.py          # rewrite the generated block
    python Testing/packaging/cmake_file_list.py --check  # exit 1 if the block is out of date

`.py` files go to MODULE_PYTHON_SCRIPTS (byte-compiled by Slicer's build), everything else to
MODULE_PYTHON_RESOURCES. `Testing/` (registered by its own CMakeLists), CMakeLists.txt files and build or cache
artefacts (the .gitignore patterns below) are not listed.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "MultiModalGen"
CMAKE_FILE = MODULE_DIR / "CMakeLists.txt"
BEGIN = "# BEGIN GENERATED FILE LIST (python Testing/packaging/cmake_file_list.py; do not edit by hand)"
END = "# END GENERATED FILE LIST"
EXCLUDED_DIRS = ("__pycache__", "*.egg-info", ".*", "build", "dist", ".pytest_cache")
EXCLUDED_FILES = ("*.pyc", "*.pyo", ".*", "*~", "*.part.*", "*.swp", "CMakeLists.txt")


def module_files(module_dir: Path = MODULE_DIR) -> list[str]:
    """Every packaged file of the module folder, as POSIX paths relative to it, sorted."""
    out = []
    for path in sorted(module_dir.rglob("*")):
        rel = path.relative_to(module_dir)
        if not path.is_file() or rel.parts[0] == "Testing":
            continue
        if any(fnmatch.fnmatch(part, pat) for part in rel.parts[:-1] for pat in EXCLUDED_DIRS):
            continue
        if any(fnmatch.fnmatch(rel.name, pat) for pat in EXCLUDED_FILES):
            continue
        out.append(rel.as_posix())
    return out


def render_block(files: list[str]) -> str:
    scripts = [f for f in files if f.endswith(".py")]
    resources = [f for f in files if not f.endswith(".py")]
    lines = [BEGIN, "set(MODULE_PYTHON_SCRIPTS"] + [f"  {f}" for f in scripts] + ["  )", "",
                                                                                  "set(MODULE_PYTHON_RESOURCES"]
    lines += [f"  {f}" for f in resources] + ["  )", END]
    return "\n".join(lines)


def listed_files(text: str) -> list[str]:
    """Paths listed inside the generated block of a CMakeLists text."""
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return [line.strip() for line in block.splitlines()
            if line.strip() and not line.strip().startswith(("set(", ")", "#"))]


def updated_text(text: str, files: list[str]) -> str:
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + render_block(files) + tail


def main(argv: list[str]) -> int:
    text = CMAKE_FILE.read_text()
    new = updated_text(text, module_files())
    if "--check" in argv:
        if new != text:
            print("MultiModalGen/CMakeLists.txt is out of date: run python Testing/packaging/cmake_file_list.py")
            return 1
        return 0
    if new != text:
        CMAKE_FILE.write_text(new)
        print(f"updated {CMAKE_FILE} ({len(module_files())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
