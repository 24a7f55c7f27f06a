"""How the engines size themselves: local processes per core or GPU, Ray actors per cluster resources."""

from __future__ import annotations

import pytest

from multimodalgen.batch.ray_engine import plan_actors
from multimodalgen.batch.runner import local_plan
from multimodalgen.batch.tasks import get_task
from multimodalgen.errors import UserInputError


def test_local_plan_is_device_aware():
    workers, devices = local_plan(get_task("resample"), "auto", None, threads=1)
    assert devices == ["cpu"] and workers >= 1
    assert local_plan(get_task("resample"), "auto", 3, threads=1) == (3, ["cpu"])
    import torch

    if not torch.cuda.is_available():
        assert local_plan(get_task("register"), "auto", None, threads=1)[1] == ["cpu"]
        with pytest.raises(UserInputError, match="CUDA"):
            local_plan(get_task("register"), "cuda", None, threads=1)
    else:
        workers, devices = local_plan(get_task("register"), "auto", None, threads=1)
        assert workers == torch.cuda.device_count() and devices[0] == "cuda:0"


def test_ray_plan_actors():
    cpu_only = {"CPU": 8.0}
    assert plan_actors(cpu_only, n_jobs=100, workers=None, threads=2, use_gpu=True, device="auto") == (4, False)
    assert plan_actors(cpu_only, n_jobs=3, workers=None, threads=1, use_gpu=False, device="auto") == (3, False)
    assert plan_actors(cpu_only, n_jobs=100, workers=5, threads=1, use_gpu=False, device="auto") == (5, False)
    gpus = {"CPU": 32.0, "GPU": 4.0}
    assert plan_actors(gpus, n_jobs=100, workers=None, threads=2, use_gpu=True, device="auto") == (4, True)
    assert plan_actors(gpus, n_jobs=100, workers=None, threads=2, use_gpu=True, device="cpu") == (16, False)
    assert plan_actors(gpus, n_jobs=100, workers=None, threads=1, use_gpu=False, device="auto") == (32, False)
    with pytest.raises(UserInputError, match="no GPU"):
        plan_actors(cpu_only, n_jobs=1, workers=None, threads=1, use_gpu=True, device="cuda")


def test_worker_python_inside_slicer(tmp_path):
    from multimodalgen.batch.local_engine import worker_python

    assert worker_python("/usr/bin/python3.11") is None
    app = tmp_path / "Slicer-5.8" / "bin" / "SlicerApp-real"
    app.parent.mkdir(parents=True)
    app.write_text("")
    assert worker_python(str(app)) is None  # nothing better found: keep the default
    (app.parent / "PythonSlicer").write_text("")
    assert worker_python(str(app)) == str(app.parent / "PythonSlicer")
    assert worker_python(str(tmp_path / "Slicer-5.8" / "Slicer")) == str(app.parent / "PythonSlicer")


def test_ray_plan_never_exceeds_the_cluster():
    assert plan_actors({"CPU": 2.0}, n_jobs=100, workers=8, threads=1, use_gpu=False, device="auto") == (2, False)
    assert plan_actors({"CPU": 2.0}, n_jobs=100, workers=None, threads=4, use_gpu=False, device="auto") == (1, False)
