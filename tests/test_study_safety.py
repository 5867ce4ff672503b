"""A study's folder lock, hostile result.json files and the failure policy (issue 24, groups 5-7)."""

import fcntl
import json
import os

from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import one_line
from tests.test_study import tiny_plan

runner = CliRunner()


def test_a_run_another_process_trains_is_left_to_it_and_listed_as_running(tmp_path):
    plan = tiny_plan(tmp_path)
    study = tmp_path / "study"
    run = study / "SN-fast-s0"
    run.mkdir(parents=True)  # another process's run, before its first checkpoint
    (run / "config.yaml").write_text("running\n")
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"node7:4242\n", 0)
    try:
        result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    finally:
        os.close(fd)
    assert result.exit_code == 0, result.output
    assert "SN-fast-s0: running in another process (host node7, PID 4242); left to it" in result.output
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml"]  # untouched
    records = {r["variant"]: r for r in map(json.loads, (study / "study.jsonl").read_text().splitlines())}
    assert records["SN-fast"]["status"] == "running" and records["WGAN-GP-fast"]["status"] == "finished"
    assert "| SN-fast | 0 | running |" in (study / "study.md").read_text()


def test_a_folder_sngan_did_not_make_is_refused_and_its_files_kept(tmp_path):
    plan = tiny_plan(tmp_path, methods={"SN": []})
    study = tmp_path / "study"
    study.mkdir()
    for name in (".lock", "study.md"):
        (study / name).write_text(f"the user's {name}\n")
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: study folder '{study}' is not empty and is not a study "
                                                  f"folder sngan made (no .sngan-study); choose another --out"]
    assert {p.name: p.read_text() for p in study.iterdir()} == {".lock": "the user's .lock\n",
                                                                "study.md": "the user's study.md\n"}


def test_a_corrupt_result_json_is_one_line_naming_it(tmp_path):
    plan = tiny_plan(tmp_path, methods={"SN": []})
    run = tmp_path / "study" / "SN-fast-s0"
    run.mkdir(parents=True)
    for text in ("{not json", "[1, 2]", json.dumps({"status": 3, "message": "", "config": ""}), "[" * 100_000):
        (run / "result.json").write_text(text)
        result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.strip().splitlines()
        assert f"{run / 'result.json'}: " in line and "move the run folder aside" in line


def test_a_failed_run_is_named_recorded_and_the_others_go_on(tmp_path):
    plan = tiny_plan(tmp_path)
    study = tmp_path / "study"
    (study / "SN-fast-s0").mkdir(parents=True)  # not a run folder sngan made: this run fails to start
    (study / "SN-fast-s0" / "mine.txt").write_text("someone's file\n")
    (study / "SN-fast-s0" / "checkpoints").mkdir()
    (study / "SN-fast-s0" / "checkpoints" / "ckpt-0000001.pt").write_text("not a checkpoint\n")
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: 1 of 2 runs failed (SN-fast-s0: ") and "run the study again" in line
    records = {r["variant"]: r for r in map(json.loads, (study / "study.jsonl").read_text().splitlines())}
    assert records["SN-fast"]["status"] == "failed" and records["SN-fast"]["message"]
    assert records["WGAN-GP-fast"]["status"] == "finished"
    assert (study / "SN-fast-s0" / "mine.txt").read_text() == "someone's file\n"


def test_a_study_with_evaluation_and_no_inception_weights_stops_before_its_first_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SNGAN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    plan = tiny_plan(tmp_path, evaluation={"every": 1, "protocol": "quick"})
    result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    line = one_line(result)
    assert result.exit_code == 1 and "Inception weights" in line and "runs failed" not in line  # said once, first
    assert not [p for p in (tmp_path / "study").iterdir() if p.is_dir()]  # no run was started
