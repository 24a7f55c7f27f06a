"""Python dependencies of the backend inside Slicer: check what is missing, install it after the user agrees.

Never installs at import time or in a constructor. torch comes from the PyTorch extension (PyTorchUtils, which
picks the CUDA build matching the driver, or CPU); everything else through Slicer's pip helpers. The check
(`missingRequirements`) is pure and runs anywhere; `installMissing` needs Slicer.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Callable

#: (import name, pip requirement) the backend needs besides torch. SimpleITK ships with Slicer.
REQUIREMENTS = [
    ("numpy", "numpy>=1.24"),
    ("scipy", "scipy>=1.10"),
    ("nibabel", "nibabel>=5"),
    ("SimpleITK", "SimpleITK>=2.3"),
    ("safetensors", "safetensors>=0.4"),
    ("nrrd", "pynrrd>=1.0"),
    ("slicerio", "slicerio>=1.0"),
]
TORCH_REQUIREMENT = "torch>=2.1"
#: Extra packages only a remote *server* needs (never installed into Slicer by default).
SERVER_REQUIREMENTS = ["fastapi>=0.110", "uvicorn>=0.27"]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _versionTuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def requirementSatisfied(requirement: str, versionOf: Callable[[str], str | None] = _version) -> bool:
    """True when the distribution named in `requirement` ("name>=x.y" or "name") is installed at a new-enough
    version."""
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][0-9.]*))?\s*$", requirement)
    if not match:
        raise ValueError(f"unsupported requirement syntax: {requirement!r}")
    installed = versionOf(match.group(1))
    if installed is None:
        return False
    return match.group(2) is None or _versionTuple(installed) >= _versionTuple(match.group(2))


def missingRequirements(includeTorch: bool = True,
                        versionOf: Callable[[str], str | None] = _version) -> list[str]:
    """Pip requirements not satisfied in this Python (torch first when missing and `includeTorch`)."""
    missing = [req for _name, req in REQUIREMENTS if not requirementSatisfied(req, versionOf)]
    if includeTorch and not requirementSatisfied(TORCH_REQUIREMENT, versionOf):
        missing.insert(0, TORCH_REQUIREMENT)
    return missing


def describeMissing(missing: list[str]) -> str:
    """One confirmation text listing everything that would be installed."""
    lines = ["MultiModalGen needs these Python packages, which are not installed yet:", ""]
    lines += [f"  - {req}" + (" (through the PyTorch extension, CUDA build matching your GPU driver, or CPU)"
                              if req.startswith("torch") else "") for req in missing]
    lines += ["", "Download and install them now? This can take several minutes; Slicer may need a restart.",
              "Offline computer? See README > Troubleshooting > Offline install."]
    return "\n".join(lines)


class InstallError(RuntimeError):
    """Installation failed or was declined; `restartRequired` tells the panel to offer a restart."""

    def __init__(self, message: str, restartRequired: bool = False):
        super().__init__(message)
        self.restartRequired = restartRequired


def installMissing(askConfirmation: bool = True, includeTorch: bool = True) -> list[str]:
    """Install missing requirements inside Slicer after one confirmation. Returns what was installed.

    Raises InstallError when the user declines or an install fails. Only call from the GUI thread.
    """
    import slicer

    missing = missingRequirements(includeTorch=includeTorch)
    if not missing:
        return []
    if askConfirmation and not slicer.app.testingEnabled():
        if not slicer.util.confirmOkCancelDisplay(describeMissing(missing), "MultiModalGen dependencies"):
            raise InstallError("installation declined; MultiModalGen cannot run its backend without these packages")
    installed = []
    if missing and missing[0].startswith("torch"):
        try:
            import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS)
        except ImportError as exc:
            raise InstallError("the PyTorch extension is missing: install 'PyTorch' from the Extensions Manager, "
                               "restart Slicer, then try again", restartRequired=True) from exc
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            torch = torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.1")
            if torch is None:
                raise InstallError("PyTorch could not be installed; see the Python console for details")
        installed.append(missing.pop(0))
    for requirement in missing:
        slicer.util.pip_install(requirement)
        installed.append(requirement)
    return installed
