"""Optional fields of a few-shot result, shown when the engine provides them (the effect never requires them).

The few-shot engine may add, in the task outputs or in their ``report``:

- ``confidence``: a number (whole result), ``{label: number}`` or ``[{"label": n, "confidence": x}, ...]``
  (0..1 per structure);
- ``suggested_slice`` (also spelled ``suggest_next_slice`` / ``next_slice``): where painting one more slice helps
  most: an index, ``{"axis": a, "index": i}`` or ``{"label": n, "axis": a, "index": i}`` (or a list of those).

Unknown shapes are ignored rather than shown wrongly.
"""

from __future__ import annotations

AXIS_NAMES = "IJK"
SUGGESTION_KEYS = ("suggested_slice", "suggest_next_slice", "next_slice")


def _lookup(outputs: dict, key: str):
    report = outputs.get("report") if isinstance(outputs.get("report"), dict) else {}
    return outputs.get(key, report.get(key))


def confidences(outputs: dict) -> dict[int | None, float]:
    """{label value (None = whole result): confidence} from the optional ``confidence`` field."""
    value = _lookup(outputs, "confidence")
    out: dict[int | None, float] = {}
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[None] = float(value)
        elif isinstance(value, dict):
            out.update({int(k): float(v) for k, v in value.items()})
        elif isinstance(value, list):
            out.update({int(item["label"]): float(item["confidence"]) for item in value})
    except (KeyError, TypeError, ValueError):
        return {}
    return out


def suggestions(outputs: dict) -> list[dict]:
    """[{"label": n or None, "axis": a or None, "index": i}] from the optional suggested-slice field."""
    value = next((v for v in (_lookup(outputs, k) for k in SUGGESTION_KEYS) if v is not None), None)
    items = value if isinstance(value, list) else [value] if value is not None else []
    out = []
    for item in items:
        try:
            if isinstance(item, dict):
                label = item.get("label")
                axis = item.get("axis")
                out.append({"label": None if label is None else int(label),
                            "axis": None if axis is None else int(axis), "index": int(item["index"])})
            elif not isinstance(item, bool):
                out.append({"label": None, "axis": None, "index": int(item)})
        except (KeyError, TypeError, ValueError):
            continue
    return out


def describe(outputs: dict, names: dict[int, str]) -> str:
    """One line per optional field present, e.g. "confidence: liver 0.92" / "paint next: liver, K slice 41"."""
    lines = []
    conf = confidences(outputs)
    if conf:
        parts = [f"{names.get(k, f'label {k}') if k is not None else 'result'} {v:.2f}" for k, v in conf.items()]
        lines.append("confidence: " + ", ".join(parts))
    for s in suggestions(outputs):
        where = f"{AXIS_NAMES[s['axis']]} slice {s['index']}" if s["axis"] in (0, 1, 2) else f"slice {s['index']}"
        who = f"{names.get(s['label'], 'label %d' % s['label'])}, " if s["label"] is not None else ""
        lines.append(f"paint next: {who}{where}")
    return "\n".join(lines)
