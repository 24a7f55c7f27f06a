"""The shipped samples as Slicer Sample Data sources: every file listed with the right load type and a checksum
that matches the file (Slicer refuses a file whose SHA256 differs), thumbnails present, and every shipped volume
offered."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from MultiModalGenLib import sample_data
from multimodalgen.errors import UserInputError


def test_sources_point_to_shipped_files_with_matching_checksums():
    sources = sample_data.sampleDataSources()
    assert [s["category"] for s in sources] == ["MultiModalGen"] * len(sources) and len(sources) == 2
    offered = set()
    for source in sources:
        n = len(source["uris"])
        assert n == len(source["fileNames"]) == len(source["nodeNames"]) == len(source["checksums"]) == \
            len(source["loadFileType"])
        for uri, name, checksum, kind in zip(source["uris"], source["fileNames"], source["checksums"],
                                             source["loadFileType"]):
            path = Path(uri.removeprefix("file://"))
            assert path.is_file() and path.name == name
            assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest(), name
            assert kind == ("SegmentationFile" if name.endswith(".seg.nrrd") else "VolumeFile")
            offered.add(name)
        thumbnail = Path(source["thumbnailFileName"])
        assert thumbnail.is_file() and thumbnail.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shipped = {p.name for p in sample_data.SAMPLE_DATA_DIR.iterdir() if p.name.endswith((".nrrd", ".nii.gz"))}
    assert offered == shipped


def test_manifest_validation(tmp_path):
    bad = {"samples": [{"name": "x", "thumbnail": "t.png", "files": [{"file": "a", "node": "a", "type": "Mesh"}]}]}
    (tmp_path / "m.json").write_text(json.dumps(bad))
    with pytest.raises(UserInputError, match="load type"):
        sample_data.loadManifest(tmp_path / "m.json")
