"""The one human sentence each verb prints on success: what was written where, and the headline number.

The command line prints `success_sentence(...)` unless `--progress json` (then the `result` event carries the full
`Result`). Every verb goes through this one function, so the sentences read alike:
``<verb>: wrote <what> to <where> (<headline>, <seconds> s).``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multimodalgen.verbs.result import Result


def _seconds(result: Result) -> float:
    """End-to-end seconds when the driver measured them, else the sum of its stages."""
    timings = result.timings or {}
    if "end_to_end_in_process" in timings:
        return float(timings["end_to_end_in_process"])
    return float(sum(float(v) for k, v in timings.items() if k != "engine"))


def _dice(metrics: dict[str, Any]) -> str:
    """", mean Dice 0.674 against the reference (grey matter, white matter, cerebrospinal fluid, by name; not in
    the reference: skull, soft tissue)" (`dice.dice_scores`' policy: the reference's classes are scored)."""
    dice = metrics.get("dice") or {}
    if "dice_mean" not in dice:
        return ""
    details = []
    scored, unscored = list(dice.get("scored") or []), list(dice.get("unscored") or [])
    if dice.get("matched_by") == "name":
        details.append(", ".join(scored) + ", by name" if len(scored) <= 6 else f"{len(scored)} classes by name")
    if unscored:
        details.append("not in the reference: " + (", ".join(unscored) if len(unscored) <= 6
                                                   else f"{len(unscored)} classes"))
    return f", mean Dice {dice['dice_mean']:.3f} against the reference" + (f" ({'; '.join(details)})"
                                                                             if details else "")


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in (shape or []))


def registration_mode(metrics: dict[str, Any]) -> str:
    """The transform model a registration delivered: the requested mode, or e.g. "affine (deformable stage not
    used)" when the engine kept the linear result (`report["mode_delivered"]`, see `registration.mi_check`)."""
    mode = metrics.get("mode") or (metrics.get("provenance") or {}).get("options", {}).get("mode") or "registration"
    delivered = metrics.get("mode_delivered")
    return f"{delivered} ({mode} stage not used)" if delivered and delivered != mode else mode


def registration_numbers(metrics: dict[str, Any]) -> list[str]:
    """The headline numbers of a registration report, as phrases: dissimilarity before -> after (lower is
    better), folding, mean Dice against a reference (each only when present). Used by the success sentence and
    the overlay figure's caption."""
    parts = []
    before, after = metrics.get("similarity_before"), metrics.get("similarity_after")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        parts.append(f"dissimilarity {before:.3f} -> {after:.3f}")
    folding = (metrics.get("jacobian") or {}).get("nonpositive_fraction")
    if isinstance(folding, (int, float)):
        parts.append(f"folding {100 * folding:.2f} % of voxels")
    if _dice(metrics):
        parts.append(_dice(metrics)[2:])
    return parts


def _register(result: Result, out: Path) -> str:
    m = result.metrics
    names = sorted(Path(p).name for p in result.outputs.values())
    details = ", ".join([registration_mode(m)] + registration_numbers(m) + [f"{_seconds(result):.1f} s"])
    return f"register: wrote {len(names)} files ({', '.join(names)}) to {out} ({details})."


def _segment(result: Result, out: Path) -> str:
    m = result.metrics
    names = [s.get("name", str(s.get("label"))) for s in m.get("segments", []) if isinstance(s, dict)]
    volumes = m.get("volumes_ml") or {}
    if isinstance(volumes, dict) and volumes:
        names = [f"{n} {volumes[n]:.0f} mL" if isinstance(volumes.get(n), (int, float)) else n for n in names]
    confidence = m.get("confidence")
    trust = f", confidence {confidence:.2f}" if isinstance(confidence, (int, float)) else ""
    atlas = m.get("atlas") if isinstance(m.get("atlas"), dict) else None
    prior = (f", atlas {atlas.get('source')} at weight {atlas.get('weight'):g}, brain agreement "
             f"{atlas.get('brain_agreement'):.2f}" if atlas and isinstance(atlas.get("brain_agreement"), (int, float))
             and isinstance(atlas.get("weight"), (int, float)) else "")
    return (f"segment: wrote {len(names)} segments ({', '.join(names)}) to {out} from "
            f"{', '.join(m.get('modalities', [])) or 'the given images'} (adapter {m.get('adapter', 'none')}"
            f"{prior}{trust}{_dice(m)}, {_seconds(result):.1f} s).")


def _fewshot(result: Result, out: Path) -> str:
    m = result.metrics
    notes = "".join(f" Note: {n}." for n in m.get("notes", []) or [])
    saved = f"; task saved to {result.outputs['task']}" if "task" in result.outputs else ""
    labels = m.get("labels") or []
    return (f"fewshot: wrote {len(labels)} structure(s) (labels {', '.join(str(v) for v in labels)}) to {out}"
            f"{saved} ({_dice(m)[2:] + ', ' if _dice(m) else ''}{_seconds(result):.1f} s).{notes}")


def _finetune(result: Result, out: Path) -> str:
    m = result.metrics
    return (f"finetune: wrote adapter {m.get('adapter_name', out.name)} to {out} "
            f"({m.get('size_bytes', 0) / 1e3:.1f} kB, {m.get('cases', '?')} case(s), {_seconds(result):.1f} s).")


def _features(result: Result, out: Path) -> str:
    m = result.metrics
    return (f"features: wrote {m.get('channels', '?')}-channel encoder features ({_shape(m.get('shape', [])[1:])} "
            f"voxels) to {out} ({_seconds(result):.1f} s).")


def _convert(result: Result, out: Path) -> str:
    m = result.metrics
    spacing = "x".join(f"{s:g}" for s in m.get("spacing_mm", []))
    return f"convert: wrote {out} ({_shape(m.get('shape'))} voxels at {spacing} mm, {_seconds(result):.1f} s)."


def _apply(result: Result, out: Path) -> str:
    m = result.metrics
    direction = "the inverse of the transform" if m.get("inverse") else "the transform"
    return (f"apply: wrote the moving volume resampled through {direction} to {out} "
            f"({_shape(m.get('shape'))} voxels on the reference grid, {_seconds(result):.1f} s).")


def _resample(result: Result, out: Path) -> str:
    return (f"resample: wrote {len(result.outputs)} volume(s) ({', '.join(sorted(result.outputs))}) to {out} "
            f"({_seconds(result):.1f} s).")


_SENTENCES = {"register": _register, "segment": _segment, "fewshot": _fewshot, "finetune": _finetune,
              "features": _features, "convert": _convert, "apply": _apply, "resample": _resample}


def success_sentence(verb: str, result: Result, out: str | Path) -> str:
    """One line saying what verb `verb` wrote where and its headline number (no JSON, no newline)."""
    writer = _SENTENCES.get(verb)
    if writer is None:
        return f"{verb}: wrote {', '.join(str(p) for p in result.outputs.values()) or out}."
    return " ".join(writer(result, Path(out)).split("\n"))
