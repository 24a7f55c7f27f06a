"""Label definitions: what a label value means (name, colour, standard terminology), one schema for every model.

A `LabelDefinition` is what a model knows about one of its output classes. It travels with label maps as the
`Volume.metadata["segments"]` list (dicts `{"label", "name", "color", "terminology"}`, see `to_segment`), is written
into `.seg.nrrd` files (Slicer reads the terminology entry and shows the standard name), into a JSON sidecar next to
NIfTI label maps, and into model configs (`labels` list).

Terminology codes are SNOMED-CT (coding scheme designator `SCT`), as DICOM CID 7140 "Brain Structure for
Volumetric Measurement" and Slicer's general-anatomy terminology use them. The Slicer terminology entry string is
`"Segmentation category and type - 3D Slicer General Anatomy list~<category>~<type>~^^~Anatomic codes - DICOM
master list~^^~^^"`, each code written `SCT^<code>^<meaning>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from multimodalgen.errors import UserInputError

SLICER_TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
SLICER_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    """One coded concept: `(scheme, value, meaning)`, e.g. `("SCT", "68523003", "Cerebral white matter")`."""

    scheme: str
    value: str
    meaning: str

    def slicer(self) -> str:
        """`SCT^68523003^Cerebral white matter` (Slicer's terminology-entry spelling)."""
        return f"{self.scheme}^{self.value}^{self.meaning}"


ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
TISSUE = Code("SCT", "85756007", "Tissue")
BODY_SUBSTANCE = Code("SCT", "91720002", "Body Substance")


@dataclass(frozen=True)
class LabelDefinition:
    """One output class of a model.

    value: the label value in label maps (1..255; 0 is background and never defined).
    name: the name users see (segment name in Slicer, column in tables).
    color: RGB in [0, 1].
    category, type: SNOMED-CT terminology of the class (None where no standard code fits).
    """

    value: int
    name: str
    color: tuple[float, float, float]
    category: Code | None = None
    type: Code | None = None

    def terminology_entry(self) -> str:
        """Slicer's `TerminologyEntry` tag for this class ('' when the class has no code)."""
        if self.category is None or self.type is None:
            return ""
        return (f"{SLICER_TERMINOLOGY_CONTEXT}~{self.category.slicer()}~{self.type.slicer()}~^^~"
                f"{SLICER_ANATOMIC_CONTEXT}~^^~^^")

    def to_segment(self) -> dict:
        """The `Volume.metadata["segments"]` entry: `{"label", "name", "color", "terminology"}`."""
        return {"label": self.value, "name": self.name, "color": list(self.color),
                "terminology": self.terminology_entry()}

    def to_json(self) -> dict:
        """JSON form for model configs and sidecars (codes as `[scheme, value, meaning]`)."""
        data = asdict(self)
        data["color"] = list(self.color)
        for key in ("category", "type"):
            code = getattr(self, key)
            data[key] = None if code is None else [code.scheme, code.value, code.meaning]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LabelDefinition":
        """Inverse of `to_json`; validates the value range and colour."""
        try:
            value = int(data["value"])
            name = str(data["name"])
            color = tuple(float(c) for c in data.get("color", (0.5, 0.5, 0.5)))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError("invalid label definition", expected='{"value": 1..255, "name": str, "color": [r,g,b]}',
                                 got=repr(data)[:200], fix="fix the model's config.json labels list") from exc
        if not 1 <= value <= 255 or len(color) != 3:
            raise UserInputError("invalid label definition", expected="value in 1..255 and an RGB colour",
                                 got=repr(data)[:200], fix="fix the model's config.json labels list")
        codes = [None if data.get(k) is None else Code(*[str(x) for x in data[k]]) for k in ("category", "type")]
        return cls(value, name, color, codes[0], codes[1])


def labels_to_json(labels: list[LabelDefinition]) -> list[dict]:
    """A model config's `labels` list."""
    return [label.to_json() for label in labels]


def labels_from_json(items: list[dict]) -> list[LabelDefinition]:
    """Parse a model config's `labels` list; values must be unique."""
    labels = [LabelDefinition.from_json(item) for item in items]
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        raise UserInputError("duplicate label values in a label list", expected="unique values",
                             got=str(values), fix="fix the model's config.json labels list")
    return labels


def segments_from_labels(labels: list[LabelDefinition]) -> list[dict]:
    """`Volume.metadata["segments"]` for a label map whose values follow `labels`."""
    return [label.to_segment() for label in labels]


# The head tissue classes of the personalized base model (synth-2 label sources: SPM TPM classes).
GREY_MATTER = LabelDefinition(1, "grey matter", (0.69, 0.48, 0.40), ANATOMICAL_STRUCTURE,
                              Code("SCT", "40146001", "Cerebral gray matter"))
WHITE_MATTER = LabelDefinition(2, "white matter", (0.96, 0.93, 0.82), ANATOMICAL_STRUCTURE,
                               Code("SCT", "68523003", "Cerebral white matter"))
CSF = LabelDefinition(3, "cerebrospinal fluid", (0.34, 0.62, 0.86), BODY_SUBSTANCE,
                      Code("SCT", "65216001", "Cerebrospinal fluid"))
BONE = LabelDefinition(4, "skull", (0.95, 0.84, 0.57), ANATOMICAL_STRUCTURE,
                       Code("SCT", "89546000", "Bone structure of cranium"))
SOFT_TISSUE = LabelDefinition(5, "soft tissue", (0.69, 0.36, 0.31), TISSUE,
                              Code("SCT", "87784001", "Soft tissues"))

HEAD_TISSUES: list[LabelDefinition] = [GREY_MATTER, WHITE_MATTER, CSF, BONE, SOFT_TISSUE]
BRAIN_TISSUES: list[LabelDefinition] = [GREY_MATTER, WHITE_MATTER, CSF]

_ALIASES = {"gm": GREY_MATTER, "grey matter": GREY_MATTER, "gray matter": GREY_MATTER,
            "wm": WHITE_MATTER, "white matter": WHITE_MATTER,
            "csf": CSF, "cerebrospinal fluid": CSF, "skull": BONE, "bone": BONE, "soft tissue": SOFT_TISSUE}


def default_color(value: int) -> tuple[float, float, float]:
    """A distinct, deterministic RGB colour in [0, 1] for label value `value` (classes without a definition)."""
    palette = [(0.89, 0.10, 0.11), (0.22, 0.49, 0.72), (0.30, 0.69, 0.29), (0.60, 0.31, 0.64),
               (1.00, 0.50, 0.00), (1.00, 1.00, 0.20), (0.65, 0.34, 0.16), (0.97, 0.51, 0.75)]
    return palette[(value - 1) % len(palette)]


def definitions_for(names: tuple[str, ...] | list[str]) -> list[LabelDefinition]:
    """Label definitions for a model's class names in label-value order (`names[0]` is background and gets none).
    Known tissue names (and the legacy GM/WM/CSF spellings) get their colour and SNOMED-CT codes, others a default
    colour and no code; every definition keeps the model's own name."""
    out = []
    for value, name in enumerate(names):
        if value == 0:
            continue
        known = _ALIASES.get(str(name).strip().lower())
        if known is None:
            out.append(LabelDefinition(value, str(name), default_color(value)))
        else:
            out.append(LabelDefinition(value, str(name), known.color, known.category, known.type))
    return out


def canonical_name(name: str) -> str:
    """The standard name of a tissue class given any accepted spelling ("GM", "gray matter" -> "grey matter");
    other names come back stripped and lower-cased, so two label sets can be matched by name."""
    known = _ALIASES.get(str(name).strip().lower())
    return known.name if known is not None else str(name).strip().lower()
