"""Rules shared across the Slicer/backend seam: one annotation-axis rule, one job state machine."""

from __future__ import annotations

import numpy as np

from MultiModalGenLib import bridge
from multimodalgen.fewshot.annotations import find_annotations
from multimodalgen.worker import protocol
from multimodalgen.worker.process import Job


def test_slicer_and_backend_pick_the_same_painted_axis():
    """Thick axial slices (3 mm) painted on 4 of 10 slices, the structure spanning 30 of 100 columns: a
    'fewest slices per length' rule would pick i; the backend (and so Slicer) keeps the painted axis k."""
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    painting = np.zeros((100, 100, 10), np.uint8)
    painting[35:65, 40:60, [2, 4, 6, 8]] = 1
    backend = find_annotations(painting, affine).primary_axis
    assert bridge.annotationAxis(painting, affine) == backend == 2
    assert bridge.annotatedSlices(painting, affine=affine) == (2, [2, 4, 6, 8])


def test_one_job_state_machine_keeps_details_and_ignores_other_ids():
    events = []
    job = Job(id="r1", task="register", params={}, on_event=lambda j, m: events.append(m["type"]))
    assert not job.apply(protocol.progress("r0", "late", 0.5))  # a late message of an earlier request
    assert job.apply(protocol.progress("r1", "register", 0.5, "half"))
    assert job.apply(protocol.error("r1", "internal", "boom", "Traceback ..."))
    assert (job.state, job.error_kind, job.error_detail) == ("failed", "internal", "Traceback ...")
    assert not job.apply(protocol.result("r1", {}))  # nothing after the end
    assert events == ["progress", "error"]
