"""Batch task registry: what each `--task` reads from the manifest, which options it takes, and which verb runs it.

Every batch task runs a verb of `multimodalgen.verbs` through `batch.verb_study.run_study_verb`: the study's
manifest cells and the task options become the verb's parameters (`verb_study.study_params`), its output goes into
the study's own folder `D/<study_id>/`, and the verb's `Result` becomes the study's outputs (names relative to that
folder), metrics and timings.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from multimodalgen.errors import UserInputError
from multimodalgen.progress import Progress

#: Column kinds: "fixed" = exactly the named required/optional columns; "modalities" = any modality name columns
#: (at least one filled per study); "any" = every non-id column is an input image.
COLUMN_KINDS = ("fixed", "modalities", "any")


@dataclasses.dataclass(frozen=True)
class TaskOption:
    """One task option, exposed on the command line as `--<name>` (dashes) and in the API as `<name>` (underscores).

    `kind` is "float", "int", "str" or "path" (a path option is made absolute and must exist; its content
    fingerprint is part of each study's input fingerprint, so changing the file re-runs the studies).
    """

    name: str
    kind: str = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    required: bool = False

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A batch task.

    Attributes:
        name: the `--task` value.
        verb: the verb it runs (`multimodalgen.verbs.VERBS`).
        columns: "fixed", "modalities" or "any" (see `COLUMN_KINDS`).
        required: required manifest columns (for "fixed").
        optional: optional manifest columns (empty cells allowed).
        options: the task's options.
        uses_gpu: runs faster on a GPU (the engines then place one study at a time per GPU).
        default_threads: CPU threads per study when the user gives none (capped at the machine's cores).
        help: one line for `--help`.
        preload: modules each worker imports when it starts (so the first study does not pay for them).
    """

    name: str
    verb: str
    columns: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    options: tuple[TaskOption, ...] = ()
    uses_gpu: bool = False
    default_threads: int = 1
    help: str = ""
    preload: tuple[str, ...] = ()


@dataclasses.dataclass
class StudyContext:
    """What a task function gets besides its inputs.

    Attributes:
        study_id: the study being processed.
        device: "cpu" or "cuda[:N]" (already resolved by the engine; pass it to engines as is).
        threads: CPU threads this study may use (torch's intra-op threads are already set to it).
        progress: progress of this study (0..1); honours cancel.
        cache: the worker's warm state (`multimodalgen.worker.state.WorkerState`): `cache.get_model(key, load)`
            keeps one model per worker process / Ray actor across studies.
    """

    study_id: str
    device: str
    threads: int
    progress: Progress
    cache: Any


_OUTPUT_FORMATS = ("nii.gz", "nrrd", "mha")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "resample", "resample", "any",
            options=(TaskOption("spacing", "float", 1.0, "isotropic voxel size in mm (resample task)"),
                     TaskOption("format", "str", "nii.gz", "output format (resample task)", _OUTPUT_FORMATS)),
            help="resample every input of a study to isotropic spacing (labels nearest-neighbour)"),
        TaskSpec(
            "convert", "convert", "fixed", required=("input",),
            options=(TaskOption("spacing", "float", None, "isotropic voxel size in mm (convert, resample tasks)"),
                     TaskOption("orient", "str", None, "reorient exactly, e.g. RAS or LPS (convert task)")),
            help="convert each study's `input` (optionally resampled or reoriented) to NIfTI"),
        TaskSpec(
            "features", "features", "fixed", required=("image",),
            options=(TaskOption("modality", "str", None, "modality of the images, e.g. T1 or CT (features task)"),),
            uses_gpu=True, default_threads=2, preload=("torch", "multimodalgen.encoder.driver"),
            help="the 16-channel encoder feature map of each study's `image`"),
        TaskSpec(
            "register", "register", "fixed",
            required=("fixed", "moving"), optional=("moving_labels", "fixed_labels", "fixed_mask"),
            options=(TaskOption("mode", "str", None, "registration mode (register task; engine default if unset)"),
                     TaskOption("preset", "str", None, "registration preset (register task; engine default)")),
            uses_gpu=True, default_threads=2, preload=("torch", "multimodalgen.registration.api",
                                                      "multimodalgen.registration.engine"),
            help="register moving to fixed; writes the transform, the warped image (and labels)"),
        TaskSpec(
            "segment", "segment", "modalities",
            optional=("label",),
            options=(TaskOption("adapter", "path", None, "adapter folder (segment task; default: the base model)"),
                     TaskOption("base-model", "path", None, "personalized base model folder (segment task; "
                                "default: the shipped one)"),
                     TaskOption("ttp-steps", "int", 0, "test-time personalization steps (segment task)"),
                     TaskOption("refine", "str", "intensity", "intensity (default) or none: refine the tissues with "
                                "the scan's own intensities (segment task)"),
                     TaskOption("atlas", "path", None, "4D tissue probability map in SPM's order, e.g. SPM12's "
                                "tpm/TPM.nii, used as the spatial prior (segment task; default: none)"),
                     TaskOption("atlas-weight", "float", None, "power of the atlas in the fusion (segment task; "
                                "default 4)")),
            uses_gpu=True, default_threads=2, preload=("torch", "multimodalgen.personalized.driver"),
            help="personalized multimodal segmentation of each study's modalities"),
        TaskSpec(
            "fewshot-apply", "fewshot", "modalities",
            optional=("label", "image"),
            options=(TaskOption("fewshot-task", "path", None, "saved few-shot task folder (fewshot-apply task)",
                                required=True),),
            uses_gpu=True, default_threads=2, preload=("torch", "multimodalgen.fewshot.driver"),
            help="apply a saved few-shot task (support examples) to each study's images"),
    )
}


def task_names() -> list[str]:
    """Every batch task name (whether or not its engine is installed)."""
    return sorted(TASKS)


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`; UserInputError for an unknown name."""
    if name not in TASKS:
        raise UserInputError(f"unknown batch task {name!r}", expected=f"one of {', '.join(task_names())}",
                             fix="pick a task with --task")
    return TASKS[name]


def all_options() -> dict[str, TaskOption]:
    """Every option of every task by key (one `--name` per key on the command line)."""
    merged: dict[str, TaskOption] = {}
    for spec in TASKS.values():
        for option in spec.options:
            merged.setdefault(option.key, option)
    return merged


def validate_options(spec: TaskSpec, options: dict | None) -> dict:
    """Check `options` against the task's options and fill defaults; path options become absolute.

    Raises UserInputError for an option the task does not take, a wrong type or choice, a missing required
    option or a path that does not exist.
    """
    options = {k.replace("-", "_"): v for k, v in dict(options or {}).items() if v is not None}
    known = {option.key: option for option in spec.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserInputError(f"option(s) {', '.join('--' + k.replace('_', '-') for k in unknown)} do not apply to "
                             f"--task {spec.name}",
                             expected=", ".join("--" + o.name for o in spec.options) or "no task options",
                             fix="drop them or choose the task they belong to")
    result: dict[str, Any] = {}
    for key, option in known.items():
        value = options.get(key, option.default)
        if value is None:
            if option.required:
                raise UserInputError(f"--task {spec.name} needs --{option.name}", fix=f"add --{option.name} "
                                     f"({option.help})")
            continue
        result[key] = _convert(option, value)
    return result


def _convert(option: TaskOption, value: Any) -> Any:
    try:
        if option.kind == "float":
            value = float(value)
            if not value > 0:
                raise ValueError
        elif option.kind == "int":
            value = int(value)
            if value < 0:
                raise ValueError
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise UserInputError(f"invalid --{option.name}", expected="a number > 0" if option.kind == "float" else
                             "an integer >= 0" if option.kind == "int" else "a string", got=repr(value)) from None
    if option.choices and value not in option.choices:
        raise UserInputError(f"invalid --{option.name}", expected=f"one of {', '.join(option.choices)}",
                             got=repr(value))
    if option.kind == "path":
        path = Path(os.path.expanduser(value)).resolve()
        if not path.exists():
            raise UserInputError(f"--{option.name} does not exist", expected="an existing file or folder",
                                 got=str(path), fix="check the path (relative paths are relative to the "
                                 "current folder)")
        value = str(path)
    return value
