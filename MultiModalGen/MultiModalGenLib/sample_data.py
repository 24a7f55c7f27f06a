"""The shipped sample volumes as Slicer Sample Data sources (module "Sample Data", category "MultiModalGen").

`Resources/SampleData/sample_data.json` lists each sample: a name, a thumbnail and its files (file name, node name,
Slicer load type, sha256). `sampleDataSources()` turns it into keyword arguments of
`SampleData.SampleDataLogic.registerCustomSampleDataSource` (Slicer's Sample Data module): local `file://` URIs
(the files ship inside the extension, nothing is downloaded), `SHA256:` checksums that Slicer verifies on load.
Standard library only (tested outside Slicer); `startup.registerSampleData` does the Slicer call.
"""

from __future__ import annotations

import json
import pathlib

from multimodalgen.errors import UserInputError

SAMPLE_DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
MANIFEST = SAMPLE_DATA_DIR / "sample_data.json"
LOAD_TYPES = ("VolumeFile", "SegmentationFile", "TransformFile", "LabelMapVolumeFile")


def loadManifest(path: pathlib.Path = MANIFEST) -> dict:
    """The manifest as a dict (validated: every sample has a name, a thumbnail and files with known load types)."""
    data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    for sample in data.get("samples", []):
        for key in ("name", "thumbnail", "files"):
            if key not in sample:
                raise UserInputError(f"sample data manifest entry lacks '{key}'", got=repr(sample)[:120],
                                     fix=f"fix {path}")
        for item in sample["files"]:
            if item.get("type") not in LOAD_TYPES:
                raise UserInputError("unknown Slicer load type in the sample data manifest",
                                     expected=", ".join(LOAD_TYPES), got=str(item.get("type")), fix=f"fix {path}")
    return data


def sampleDataSources(path: pathlib.Path = MANIFEST) -> list[dict]:
    """Keyword arguments of `SampleDataLogic.registerCustomSampleDataSource`, one dict per sample."""
    data = loadManifest(path)
    folder = pathlib.Path(path).resolve().parent
    out = []
    for sample in data["samples"]:
        files = sample["files"]
        out.append({"category": data.get("category", "MultiModalGen"), "sampleName": sample["name"],
                    "uris": [(folder / f["file"]).as_uri() for f in files],
                    "fileNames": [f["file"] for f in files], "nodeNames": [f["node"] for f in files],
                    "loadFileType": [f["type"] for f in files],
                    "checksums": [f"SHA256:{f['sha256']}" for f in files],
                    "thumbnailFileName": str(folder / sample["thumbnail"])})
    return out
