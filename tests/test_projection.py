"""The paper table's projection (benchmarks/projection.py): the trainer's epochs, hours from rates, the
loader's bound and the schedule of the runs on N GPUs."""

import sys

import pytest
import yaml

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # benchmarks/ is not a package
import projection

GPU = {"name": "test", "resnet152": {"frozen": 4000.0, "finetune": 2000.0}, "resnet50": {"frozen": 8000.0, "finetune": 4000.0}}


def test_the_schedules_are_the_paper_presets():
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["dataset_settings"]
    for dataset, schedule in projection.SCHEDULES.items():
        training = settings[dataset]["training"]
        assert schedule["epochs"] == {"frozen": training["frozen_epochs"], "finetune": training["finetune_epochs"]}
        assert schedule["backbone"] == settings[dataset]["image_encoder"]
    # the trainer's epochs: every one of COCO's 566,435 pairs (the last partial batch kept, as the original);
    # 150-pair batches (one per class) on CUB
    assert projection.SCHEDULES["coco"]["samples_per_epoch"] == 4425 * 128 + 35
    assert projection.SCHEDULES["cub"]["samples_per_epoch"] == 590 * 150


def test_a_phase_runs_at_the_slower_of_the_gpu_and_the_loader():
    samples = projection.SCHEDULES["coco"]["samples_per_epoch"]
    run = projection.run_hours("coco", {"frozen": 0.5, "finetune": 1.0}, GPU, loader=3000.0)
    assert run["frozen"] == {"hours": pytest.approx(30 * samples / 2000 / 3600), "images_per_s": 2000.0, "bound": "GPU"}
    assert run["finetune"]["images_per_s"] == 2000.0
    assert run["hours"] == pytest.approx(2 * 30 * samples / 2000 / 3600)
    starved = projection.run_hours("coco", {"frozen": 1.0, "finetune": 1.0}, GPU, loader=1000.0)
    assert starved["frozen"]["bound"] == starved["finetune"]["bound"] == "loader"
    assert starved["hours"] == pytest.approx(60 * samples / 1000 / 3600)
    # a ratio above 1 is noise: no method outruns its backbone
    assert projection.run_hours("coco", {"frozen": 1.2, "finetune": 1.0}, GPU, loader=1e9)["frozen"]["images_per_s"] == 4000.0


def test_loader_rate_has_one_worker_per_cpu_but_one():
    assert projection.loader_rate(16, 2.0) == pytest.approx(15 * projection.REFERENCE_WORKER_RAW * 2.0)


def test_runs_are_placed_longest_first_on_the_gpus():
    jobs = [3.0, 3.0, 2.0, 2.0, 2.0]
    assert projection.makespan(jobs, 1) == 12.0
    assert projection.makespan(jobs, 2) == 7.0  # 3+2+2 | 3+2: longest-first, not the optimum 6
    assert projection.makespan(jobs, 8) == 3.0


def test_the_table_is_five_methods_three_seeds_two_datasets():
    ratios = {method: {"frozen": 1.0, "finetune": 1.0} for method in projection.METHODS}
    result = projection.project(ratios, {"raw": 100.0, "stored": 100.0}, GPU)
    one_of_each = sum(result["runs"]["pcme"][d]["hours"] for d in projection.SCHEDULES)
    assert result["table_gpu_hours"] == pytest.approx(15 * one_of_each)
    assert result["makespan_hours"][1] == pytest.approx(result["table_gpu_hours"])
    assert "| pcme |" in projection.markdown(result)
