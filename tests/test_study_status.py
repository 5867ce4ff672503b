"""A study's status is total (issue 36 §7, issue 37 §3): every run has a status line, whatever failed and when;
options that cannot act are refused before anything is written."""

import json
import os

import pytest
from typer.testing import CliRunner

from sngan.cli import app
from tests.test_study import tiny_plan

runner = CliRunner()


def statuses(plan) -> list[str]:
    result = runner.invoke(app, ["study", "--plan", str(plan), "--status"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_a_run_that_fails_before_its_folder_exists_is_failed_with_its_reason_until_retried(tmp_path):
    missing = tmp_path / "no-such-data"
    plan = tiny_plan(tmp_path, methods={"SN": ["model.d_norm=spectral"],
                                        "BAD": ["data.name=folder", f"data.root={missing}"]})
    study = tmp_path / "study"
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    assert result.exit_code == 1
    assert not (study / "BAD-fast-s0").exists()  # it failed before its run folder was made
    lines = statuses(plan)  # in plan order (the plan's methods: BAD, SN)
    assert lines[0].startswith("BAD-fast-s0  failed  step 0 (data.root ") and str(missing) in lines[0]
    assert lines[1:] == ["SN-fast-s0  finished  step 2", "1 failed, 1 finished"]
    records = {r["variant"]: r for r in map(json.loads, (study / "study.jsonl").read_text().splitlines())}
    assert records["BAD-fast"]["status"] == "failed" and str(missing) in records["BAD-fast"]["message"]
    assert "| BAD-fast | 0 | failed |" in (study / "study.md").read_text()

    (missing / "a").mkdir(parents=True)  # the data appears: the next start retries the run and forgets the failure
    from PIL import Image
    for i in range(8):
        Image.new("RGB", (32, 32), (30 * i, 0, 0)).save(missing / "a" / f"{i}.png")
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress", "--only", "BAD-fast-s0"])
    assert result.exit_code == 0, result.output
    assert statuses(plan)[0] == "BAD-fast-s0  finished  step 2"


def test_several_only_options_run_exactly_those_runs(tmp_path):
    plan = tiny_plan(tmp_path, methods={"SN": ["model.d_norm=spectral"], "WC": ["model.d_norm=none"],
                                        "WGAN-GP": ["model.d_norm=none", "loss.type=wasserstein",
                                                    "loss.gp_weight=10"]})
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress", "--only", "SN-fast-s0", "--only",
                                 "WGAN-GP-fast-s0"])
    assert result.exit_code == 0, result.output
    assert statuses(plan) == ["SN-fast-s0  finished  step 2", "WC-fast-s0  pending  step 0",
                              "WGAN-GP-fast-s0  finished  step 2", "2 finished, 1 pending"]
    bad = runner.invoke(app, ["study", "--plan", str(plan), "--only", "SN-fast-s0", "--only", "nope-s0"])
    assert bad.exit_code == 1 and bad.output.startswith("error: --only nope-s0: not a run of")


def test_one_unreadable_result_is_its_runs_line_and_the_others_are_still_listed(tmp_path):
    plan = tiny_plan(tmp_path)
    assert runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"]).exit_code == 0
    broken = tmp_path / "study" / "SN-fast-s0" / "result.json"
    broken.write_text("{torn")
    lines = statuses(plan)
    assert lines[0].startswith(f"SN-fast-s0  unreadable  step 2 ({broken}: cannot read the run's result")
    assert lines[1:] == ["WGAN-GP-fast-s0  finished  step 2", "1 unreadable, 1 finished"]


def test_wait_without_an_executor_is_refused_before_anything_is_written(tmp_path):
    plan = tiny_plan(tmp_path)
    result = runner.invoke(app, ["study", "--plan", str(plan), "--wait"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --wait waits for the jobs of --executor") and \
        len(result.output.splitlines()) == 1
    assert not (tmp_path / "study").exists()


def test_executor_slurm_on_a_host_without_slurm_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    plan = tiny_plan(tmp_path)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch, no srun
    result = runner.invoke(app, ["study", "--plan", str(plan), "--executor", "slurm"])
    assert result.exit_code == 1
    assert result.output == ("error: --executor slurm needs Slurm's sbatch and srun on this host's PATH (sbatch and "
                             "srun not found): run it on a Slurm login node, or use --executor local to run the "
                             "tasks here\n")
    assert not (tmp_path / "study").exists()
    fake = tmp_path / "bin" / "sbatch"  # one of the two present: the other is named
    fake.write_text("#!/bin/sh\nexit 1\n")
    os.chmod(fake, 0o755)
    result = runner.invoke(app, ["study", "--plan", str(plan), "--executor", "slurm"])
    assert "(srun not found)" in result.output and not (tmp_path / "study").exists()


def test_executor_debug_without_wait_runs_its_jobs(tmp_path):
    pytest.importorskip("submitit")
    plan = tiny_plan(tmp_path)
    result = runner.invoke(app, ["study", "--plan", str(plan), "--executor", "debug", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "waiting (as --wait)" in result.output
    assert statuses(plan) == ["SN-fast-s0  finished  step 2", "WGAN-GP-fast-s0  finished  step 2", "2 finished"]
