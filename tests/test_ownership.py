"""What sngan writes and what it leaves alone, beyond the bad-input table (issue 24, groups 1-3; issue 31): no write
through a link, file modes under the umask, --force replacing only regular files (never a FIFO, socket or device)
and never an export the user changed, staging left by a dead process removed, run markers and what a resume moves
aside."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import SnganError
from sngan.io import Folder, append_jsonl, publishing, stage_name, write_text
from tests.helpers import one_line, write_config

runner = CliRunner()

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


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
@pytest.mark.parametrize("command", ["inspect --json", "report --out", "sample --out", "stats --out"])
def test_force_never_replaces_a_fifo_or_socket(tiny_runs, tmp_path, kind, command):
    target = tmp_path / ("target.png" if command != "inspect --json" else "target.json")
    if command == "stats --out":
        target = tmp_path / "target.npz"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "chardev":  # the issue's `mknod F c 1 7` (/dev/full's numbers)
        try:
            os.mknod(target, 0o600 | os.path.stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("making a device node needs root")
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    run = tiny_runs["uncond"]
    ckpt = str(sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1])
    args = {"inspect --json": ["inspect", "--ckpt", ckpt, "--json", str(target), "--force"],
            "report --out": ["report", str(run), "--out", str(target), "--force"],
            "sample --out": ["sample", "--ckpt", ckpt, "--out", str(target), "--force", "--no-progress"],
            "stats --out": ["stats", "--config", str(write_config(tmp_path / "c.yaml")), "--out", str(target),
                            "--force"]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    name = {"fifo": "FIFO", "socket": "socket", "chardev": "character device"}[kind]
    assert f"is a {name}, not a regular file" in one_line(result)
    mode = os.lstat(target).st_mode
    is_kind = {"fifo": os.path.stat.S_ISFIFO, "socket": os.path.stat.S_ISSOCK, "chardev": os.path.stat.S_ISCHR}
    assert is_kind[kind](mode)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_force_keeps_an_export_a_user_added_to_or_edited_while_it_ran(tiny_runs, tmp_path):
    from sngan import io as sio

    run = tiny_runs["uncond"]
    ckpt = str(sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1])
    out = tmp_path / "export"
    assert runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--no-progress"]
                         ).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_finish = sio.finish_export

    def finish_then_user_adds(folder, files):  # the new export is complete; meanwhile the user adds a file
        (out / "mine.txt").write_text("the user's file\n")
        return real_finish(folder, files)

    import sngan.sample.writers as writers

    writers.finish_export = finish_then_user_adds
    try:
        result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--force",
                                     "--seed", "3", "--no-progress"])
    finally:
        writers.finish_export = real_finish
    assert result.exit_code == 1 and "changed while this export ran: it holds 'mine.txt'" in one_line(result)
    assert (out / "mine.txt").read_text() == "the user's file\n"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "mine.txt"} == before
    (out / "mine.txt").unlink()
    first = sorted(p for p in out.iterdir() if p.suffix == ".png")[0]
    first.write_bytes(first.read_bytes() + b"edited")  # an exported file the user changed is the user's
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(out), "--num", "4", "--force",
                                 "--no-progress"])
    assert result.exit_code == 1 and f"holds '{first.name}'" in one_line(result)
    assert first.read_bytes().endswith(b"edited")


def test_a_staging_folder_of_a_dead_process_is_removed_by_the_next_writer(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / stage_name("out.png").replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    left.mkdir()
    (left / "out.png").write_bytes(b"half")
    other_host = tmp_path / f".out.png.elsewhere-{dead.pid}-0123abcd.stage"
    other_host.mkdir()
    alive = tmp_path / stage_name("out.png").replace(f"-{os.getpid()}-", f"-{os.getppid()}-")
    alive.mkdir()
    with publishing(tmp_path / "out.png", replace=False) as stage:
        stage.write_bytes(b"png")
    assert not left.exists() and other_host.exists() and alive.exists()
    assert (tmp_path / "out.png").read_bytes() == b"png"


def test_a_link_inside_the_cache_folder_is_refused_before_any_work(tmp_path):
    from types import SimpleNamespace

    from sngan.config import load_config
    from sngan.evaluation.reference import reference_stats

    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    cache.mkdir()
    elsewhere.mkdir()
    (cache / "fid-stats").symlink_to(elsewhere)
    cfg = load_config(write_config(tmp_path / "c.yaml"), [f"data.cache_dir={cache}"])
    net = SimpleNamespace(network="stand-in", features_key="stand-in-tf1")  # never used: the refusal comes first
    with pytest.raises(SnganError, match="fid-stats' is a symbolic link: sngan never writes through links"):
        reference_stats(cfg.data, 32, 0, "train", None, net, 10, lambda _: None)
    assert list(elsewhere.iterdir()) == []
    (cache / "fid-stats").unlink()
    (cache / "fid-stats").write_text("a file")
    with pytest.raises(SnganError, match="is not a folder"):
        reference_stats(cfg.data, 32, 0, "train", None, net, 10, lambda _: None)
