"""A study's folder lock, hostile result.json files and the failure policy (issue 24, groups 5-7)."""

import fcntl
import json
import os

from typer.testing import CliRunner

from sngan.cli import app
from tests.test_study import tiny_plan

runner = CliRunner()


def test_a_second_study_on_the_folder_is_one_line_naming_the_first_and_touches_nothing(tmp_path):
    plan = tiny_plan(tmp_path, methods={"SN": []})
    study = tmp_path / "study"
    (study / "SN-fast-s0").mkdir(parents=True)  # the first study's run, before its first checkpoint
    (study / "SN-fast-s0" / "config.yaml").write_text("running\n")
    fd = os.open(study / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"4242\n", 0)
    try:
        result = runner.invoke(app, ["study", "--plan", str(plan), "--no-progress"])
    finally:
        os.close(fd)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: study folder '{study}' is in use by another sngan process "
                                                  f"(PID 4242); wait for it to finish or stop it, or choose another "
                                                  f"--out"]
    assert sorted(p.name for p in study.iterdir()) == [".lock", "SN-fast-s0"]


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
