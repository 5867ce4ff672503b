"""Links, file modes, run markers and what a resume moves aside (issue 24, groups 1-3), beyond the bad-input table."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import SnganError
from sngan.io import Folder, append_jsonl, publishing, write_text

RESUME = ["train", "--no-progress", "--resume"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_open_gives_under_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
        append_jsonl(tmp_path / "b.jsonl", {"step": 1})
        folder = Folder.open(tmp_path)
        folder.write_all([("c.txt", b"c")])
        folder.close()
        with publishing(tmp_path / "d.txt", replace=False) as stage:
            stage.write_text("d")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.jsonl", "c.txt", "d.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_no_write_follows_a_link_and_the_target_stays_intact(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for name in ("a", "b"):
        (tmp_path / name).symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SnganError, match="it is a symbolic link"):
        write_text(tmp_path / "a", "x")
    with pytest.raises(SnganError, match="it is a symbolic link"):
        append_jsonl(tmp_path / "b", {"step": 1})
    with pytest.raises(SnganError, match="it is a symbolic link"):
        append_jsonl(tmp_path / "dangling", {"step": 1})
    assert victim.read_text() == "keep" and not (tmp_path / "nowhere").exists()


def test_publishing_refuses_a_target_another_writer_published_first(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(SnganError, match="written by another process"):
        with publishing(target, replace=False) as stage:
            stage.write_text("mine")
            target.write_text("theirs")
    assert target.read_text() == "theirs" and sorted(tmp_path.iterdir()) == [target]


def test_publishing_a_folder_with_replace_swaps_a_complete_export_whole_and_keeps_anything_else(tmp_path):
    import pytest

    from sngan.errors import SnganError
    from sngan.io import finish_export

    target = tmp_path / "export"
    target.mkdir()
    (target / "00000.png").write_text("old")
    with pytest.raises(SnganError, match="holds '00000.png', which its manifest.json does not list"):
        with publishing(target, replace=True) as stage:  # no manifest: not a folder sngan exported
            stage.mkdir()
            (stage / "00001.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["00000.png"] and sorted(tmp_path.iterdir()) == [target]
    finish_export(target, [target / "00000.png"])  # now an export sngan wrote, listed in its manifest
    with publishing(target, replace=True) as stage:
        stage.mkdir()
        (stage / "00001.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["00001.png"] and sorted(tmp_path.iterdir()) == [target]


def copy_run(tiny_runs, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(tiny_runs["uncond"], tmp_path / name))


def test_checkpoints_record_the_run_id_of_the_folder_marker(tiny_runs):
    run_id = (tiny_runs["uncond"] / ".sngan-run").read_text().strip()
    assert torch.load(tiny_runs["uncond_ckpt"], weights_only=True)["run_id"] == run_id
    assert run_id != (tiny_runs["cond"] / ".sngan-run").read_text().strip()


def test_a_superseded_checkpoint_is_refused_in_its_folder_and_continues_in_a_new_one(tiny_runs, tmp_path):
    """The folder's log and grids are another branch's history: continuing the abandoned branch there would mix
    the two (issue 24 allows refusing); into a new --out it continues from its own weights and step."""
    run = copy_run(tiny_runs, tmp_path)
    aside = run / "checkpoints" / "superseded-20240101-000000"
    aside.mkdir()
    shutil.copy(run / "checkpoints" / "ckpt-0000002.pt", aside / "ckpt-0000002.pt")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, [*RESUME, str(aside / "ckpt-0000002.pt"), "--set", "train.iterations=3"])
    assert result.exit_code == 1 and "abandoned branch" in result.output
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    fresh = tmp_path / "branch"
    result = CliRunner().invoke(app, ["train", "--out", str(fresh), "--resume", str(aside / "ckpt-0000002.pt"),
                                      "--set", "train.iterations=3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (fresh / "metrics.jsonl").read_text().splitlines()] == [3]


def test_resume_from_an_older_checkpoint_moves_later_grids_aside(tiny_runs, tmp_path):
    run = copy_run(tiny_runs, tmp_path)
    later = (run / "samples" / "step-0000003.png").read_bytes()
    result = CliRunner().invoke(app, [*RESUME, str(run / "checkpoints" / "ckpt-0000002.pt"), "--set",
                                      "train.iterations=2"])
    assert result.exit_code == 0, result.output
    (aside,) = [p for p in (run / "samples").iterdir() if p.is_dir()]
    assert (aside / "step-0000003.png").read_bytes() == later and not (run / "samples" / "step-0000003.png").exists()
    assert "1 log record after step 2 moved to" in result.output


def test_a_checkpoint_without_run_id_is_refused_naming_the_format_and_nothing_changes(tiny_runs, tmp_path):
    run = copy_run(tiny_runs, tmp_path)
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        state.pop("run_id")  # a pre-release layout: sngan 0.1.0 has one checkpoint format, which records the run
        torch.save(state, path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["train", "--no-progress", "--out", str(run), "--resume", "auto", "--set",
                                      "train.iterations=4"])
    assert result.exit_code == 1
    assert "its 'run_id' must be 32 hex digits, got 'None' (checkpoint format 1" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the --resume auto notice and the error
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
