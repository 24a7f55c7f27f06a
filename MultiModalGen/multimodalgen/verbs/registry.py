"""The verb registry: verb name -> typed parameters, output kind and the driver that runs it.

A driver is a file-level function in the verb's own package with the signature
``driver(**params, out: Path, ctx: RunContext) -> Result``. `out` is the output file (verbs with ``output="file"``)
or folder (``output="dir"``). Every door (CLI, worker, batch, server via the worker) calls `run_verb`, which checks
the parameters against the verb's declaration (an unknown or mistyped parameter is a one-line `UserInputError`,
never silently dropped), applies the output policy (`verbs.output_policy`: no output over an input, every output writable,
checked before the driver runs) and calls the driver.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, Callable

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext

#: Parameter kinds. File kinds hold local paths (str or PathLike) at the registry; doors translate their own
#: references (worker ``{"file": path}``, server upload ids, manifest cells) into paths before calling it.
FILE_KINDS = ("file", "files", "file_lists", "file_map", "cases")
VALUE_KINDS = ("str", "int", "float", "bool", "ints", "strs", "json")


@dataclasses.dataclass(frozen=True)
class Param:
    """One verb parameter: `name` (a Python identifier), `kind` (see FILE_KINDS / VALUE_KINDS), `required`."""

    name: str
    kind: str = "str"
    required: bool = False
    help: str = ""


@dataclasses.dataclass(frozen=True)
class Verb:
    """A verb.

    Attributes:
        name: the verb's name (CLI verb, worker task, batch task).
        target: "module:function" of the driver.
        output: "file" (one main output file; side files beside it) or "dir" (a folder of outputs).
        default_output: the output's name inside a door's folder (worker job folder, batch study folder).
        params: the driver's parameters besides `out` and `ctx`.
        help: one line.
    """

    name: str
    target: str
    output: str
    default_output: str
    params: tuple[Param, ...]
    help: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments (None values dropped). UserInputError on unknown, missing or mistyped ones."""
        given = {str(k).replace("-", "_"): v for k, v in dict(params).items() if v is not None}
        unknown = sorted(k for k in given if self.param(k) is None)
        if unknown:
            raise UserInputError(f"verb '{self.name}' has no parameter(s) {', '.join(unknown)}",
                                 expected=", ".join(p.name for p in self.params), got=", ".join(unknown),
                                 fix="drop or rename them")
        for p in self.params:
            if p.required and p.name not in given:
                raise UserInputError(f"verb '{self.name}' needs parameter '{p.name}'", fix=p.help or None)
        return {k: _check_kind(self.name, self.param(k), v) for k, v in given.items()}


def _check_kind(verb: str, p: Param, value: Any) -> Any:
    ok = {"file": lambda v: isinstance(v, (str, os.PathLike)),
          "files": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, (str, os.PathLike)) for x in v),
          "file_lists": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, (list, tuple)) for x in v),
          "file_map": lambda v: isinstance(v, dict) and all(isinstance(x, (str, os.PathLike)) for x in v.values()),
          "cases": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, dict) for x in v),
          "str": lambda v: isinstance(v, str),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "ints": lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, (list, tuple))
          and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
          "strs": lambda v: isinstance(v, (list, tuple)) and all(x is None or isinstance(x, str) for x in v),
          "json": lambda v: True}[p.kind]
    if not ok(value):
        raise UserInputError(f"verb '{verb}': parameter '{p.name}' has the wrong type", expected=p.kind,
                             got=f"{type(value).__name__} {str(value)[:60]}")
    return float(value) if p.kind == "float" else value


def file_values(param: Param, value: Any) -> Any:
    """The part of a file-kind parameter's value that holds files: all of it, except for `cases`, whose entries
    hold files under "images" and "label" only (other keys, e.g. segment names, are plain data)."""
    if param.kind == "cases" and isinstance(value, (list, tuple)):
        return [{k: case[k] for k in ("images", "label") if k in case} if isinstance(case, dict) else case
                for case in value]
    return value


def input_files(verb: Verb, params: dict[str, Any]) -> list[str]:
    """Every local input path among `params` (for the output policy)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, (str, os.PathLike)):
            found.append(os.fspath(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for p in verb.params:
        if p.kind in FILE_KINDS and p.name in params:
            walk(file_values(p, params[p.name]))
    return found


def _p(name: str, kind: str = "str", required: bool = False, help: str = "") -> Param:
    return Param(name, kind, required, help)


VERBS: dict[str, Verb] = {v.name: v for v in (
    Verb("convert", "multimodalgen.io.convert:convert_file", "file", "converted.nii.gz", (
        _p("input", "file", True), _p("label", "bool"), _p("reference", "file"), _p("spacing", "float"),
        _p("orient")), "convert between formats, optionally resample or reorient"),
    Verb("features", "multimodalgen.encoder.driver:features_file", "file", "features.nii.gz", (
        _p("image", "file", True), _p("modality"), _p("encoder"), _p("patch", "int"), _p("overlap", "float")),
        "the 16-channel encoder feature map of an image"),
    Verb("register", "multimodalgen.registration.api:register_files", "dir", ".", (
        _p("fixed", "file", True), _p("moving", "file", True), _p("moving_labels", "file"),
        _p("fixed_labels", "file"), _p("fixed_mask", "file"), _p("moving_mask", "file"), _p("mode"), _p("preset"),
        _p("init"), _p("diffeomorphic", "bool"), _p("inverse_consistent", "bool"), _p("overlay", "bool"),
        _p("resample", "bool"), _p("moving_segments", "json"), _p("outputs", "json"), _p("features"),
        _p("encoder")),
        "register moving to fixed: transform.h5, inverse_transform.h5, warped*.nii.gz, overlay.png, report.json "
        "(displacement.nii.gz on request)"),
    Verb("apply", "multimodalgen.registration.apply:apply_file", "file", "warped.nii.gz", (
        _p("moving", "file", True), _p("transform", "file", True), _p("reference", "file", True),
        _p("labels", "bool"), _p("fill", "float"), _p("inverse", "bool")),
        "resample an image or labels through a saved transform onto a reference grid"),
    Verb("segment", "multimodalgen.personalized.driver:segment_files", "file", "segmentation.nii.gz", (
        _p("images", "file_map", True), _p("adapter"), _p("base_model"), _p("probabilities", "bool"),
        _p("ttp_steps", "int"), _p("refine"), _p("resample", "bool"), _p("reference_label", "file"),
        _p("atlas", "file"), _p("atlas_weight", "float")),
        "personalized segmentation from any subset of a patient's modalities"),
    Verb("finetune", "multimodalgen.personalized.driver:finetune_files", "dir", "adapter", (
        _p("cases", "cases"), _p("cases_csv", "file"), _p("base_model"), _p("labels", "strs"), _p("method"),
        _p("steps", "int"), _p("crop", "int"), _p("lr", "float"), _p("calib_steps", "int"),
        _p("val_fraction", "float"), _p("patience", "int"), _p("seed", "int"), _p("resample", "bool")),
        "fine-tune an adapter of the personalized model on labelled cases"),
    Verb("fewshot", "multimodalgen.fewshot.driver:fewshot_files", "file", "segmentation.nii.gz", (
        _p("images", "files", True), _p("modalities", "strs"), _p("annotation", "file"),
        _p("support_images", "file_lists"), _p("support_labels", "files"), _p("apply_task", "file"),
        _p("axis", "ints"), _p("labels", "ints"), _p("seed", "int"), _p("encoder"), _p("resample", "bool"),
        _p("register"), _p("save_task", "str"), _p("task", "file"), _p("image_id"), _p("reset", "bool"),
        _p("segments", "json"), _p("reference_label", "file"), _p("preview", "bool")),
        "few-shot segmentation: painted slices, labelled support volumes or a saved task -> 3D label map"),
    Verb("resample", "multimodalgen.batch.resample_task:resample_files", "dir", ".", (
        _p("images", "file_map", True), _p("spacing", "float"), _p("format")),
        "resample every input to isotropic spacing (label columns nearest-neighbour)"),
)}


def verb_names() -> list[str]:
    """Every verb name."""
    return sorted(VERBS)


def get_verb(name: str) -> Verb:
    """The verb `name`; UserInputError for an unknown one."""
    if name not in VERBS:
        raise UserInputError(f"unknown verb {name!r}", expected=", ".join(verb_names()))
    return VERBS[name]


def load_driver(verb: Verb) -> Callable[..., Result]:
    """Import the verb's driver (a missing engine is reported by the caller's import error handling)."""
    module_name, attribute = verb.target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def run_verb(name: str, params: dict[str, Any], out: str | os.PathLike, ctx: RunContext | None = None) -> Result:
    """Run verb `name` with `params` (local paths), writing to `out`; returns the driver's `Result`."""
    from multimodalgen.verbs.output_policy import check_outputs_writable, refuse_output_over_inputs

    verb = get_verb(name)
    kwargs = verb.check(params)
    out = Path(out)
    refuse_output_over_inputs(out, verb, input_files(verb, kwargs), kwargs)
    check_outputs_writable(out, verb, kwargs)
    result = load_driver(verb)(**kwargs, out=out, ctx=ctx or RunContext())
    if not isinstance(result, Result):
        raise TypeError(f"driver of verb {name!r} returned {type(result).__name__}, not a Result")
    return result
