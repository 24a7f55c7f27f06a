"""The ExtensionsIndex catalog entry (MultiModalGen.json) follows Slicer's catalog-entry schema v1.0.2 (required
`$schema`, `category`, `scm_url`; no other keys than the schema's, which has additionalProperties false) and agrees
with the CMake metadata; the CMake metadata has what current Slicer extension packaging reads."""

from __future__ import annotations

import json

from test_cmake_lists import ROOT, cmake_metadata, s4ext_metadata

SCHEMA_KEYS = {"$schema", "build_dependencies", "build_subdirectory", "category", "enabled", "scm_revision",
               "scm_type", "scm_url", "tier"}


def test_catalog_entry_schema_fields():
    entry = json.loads((ROOT / "MultiModalGen.json").read_text())
    assert {"$schema", "category", "scm_url"} <= set(entry) <= SCHEMA_KEYS, sorted(set(entry) - SCHEMA_KEYS)
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.")
    assert entry["scm_url"].startswith("https://") and entry["scm_url"].endswith(".git")
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert isinstance(entry["build_dependencies"], list) and entry["scm_type"] == "git"


def test_catalog_entry_agrees_with_cmake_and_s4ext():
    entry = json.loads((ROOT / "MultiModalGen.json").read_text())
    cm, s4 = cmake_metadata(), s4ext_metadata()
    assert entry["category"] == cm["CATEGORY"] == s4["category"]
    assert entry["build_dependencies"] == cm["DEPENDS"].split() == ["PyTorch"]
    assert entry["scm_url"] == s4["scmurl"] and entry["scm_revision"] == s4["scmrevision"]
    assert entry["build_subdirectory"] == s4["build_subdirectory"]


def test_cmake_has_status_licence_and_readme():
    cm, s4 = cmake_metadata(), s4ext_metadata()
    assert cm["STATUS"] == s4["status"]
    assert cm["LICENSE_SHORT_DESCRIPTION"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    for key, name in (("LICENSE_FILE", "LICENSE"), ("README_FILE", "README.md")):
        assert cm[key] == "${CMAKE_CURRENT_SOURCE_DIR}/" + name and (ROOT / name).is_file()
