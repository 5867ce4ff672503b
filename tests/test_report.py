"""`sngan report`: one PNG from a run directory, written by default only into a run folder sngan made; the
matplotlib line chart it draws with; a run's odd files (a non-UTF-8 config, huge values, a grid of absurd size)
drawn or refused in one line."""

import json
import shutil

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from sngan.records import metric_keys, read_records
from sngan.report.charts import line_chart
from sngan.report.page import CHART_SIZE, HEADER, MARGIN, curves, latest_sample_grid
from tests.helpers import one_line

runner = CliRunner()


def report(*args):
    return runner.invoke(app, ["report", *map(str, args)])


def test_report_on_a_finished_run_writes_its_picture(tiny_runs):
    run = tiny_runs["uncond"]
    result = report(run)
    assert result.exit_code == 0, result.output
    picture = Image.open(run / "report.png")
    grid = Image.open(run / "samples" / "step-0000003.png")
    assert picture.mode == "RGB"
    assert picture.width > 640 + grid.width and picture.height > 2 * 240  # two charts beside the grid


def test_metric_records_add_one_chart_each(tiny_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["cond"], run)
    base = report(run, "--out", tmp_path / "base.png")
    assert base.exit_code == 0, base.output
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 2, "is_5k": 1.5, "fid_10k": 300.0}) + "\n")
        fh.write(json.dumps({"step": 3, "is_5k": 1.7, "fid_10k": 280.0, "note": "text", "flag": True}) + "\n")
        fh.write('{"step": 4, "d_lo')  # a half-written line of a run in progress
    more = report(run, "--out", tmp_path / "more.png")
    assert more.exit_code == 0, more.output
    charts = 4  # losses, learning rate, is_5k, fid_10k
    assert Image.open(tmp_path / "more.png").height == HEADER + charts * CHART_SIZE[1] + MARGIN
    assert Image.open(tmp_path / "base.png").height < Image.open(tmp_path / "more.png").height


def test_report_refuses_what_is_not_a_run(tmp_path):
    assert report(tmp_path / "missing").exit_code == 1
    result = report(tmp_path, "--out", tmp_path / "r.png")
    assert result.exit_code == 1 and "not a run directory" in result.output
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "d_loss": 1.0}) + "\n")
    result = report(tmp_path, "--out", tmp_path / "r.jpg")
    assert result.exit_code == 1 and ".png" in result.output
    (tmp_path / "report.png").write_bytes(b"the user's own file")
    result = report(tmp_path)  # a folder with a log but no run marker: its report.png is not sngan's to replace
    assert result.exit_code == 1 and "not a run folder sngan made" in result.output and "--out" in result.output
    assert (tmp_path / "report.png").read_bytes() == b"the user's own file"
    assert report(tmp_path, "--out", tmp_path / "r.png").exit_code == 0  # metrics without samples are enough
    (tmp_path / ".sngan-run").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "report.png").unlink()
    assert report(tmp_path).exit_code == 0 and (tmp_path / "report.png").stat().st_size > 1000


def test_records_and_metric_keys(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "d_loss": 1.0, "lr": 0.1}\n\n{"step": 2, "fid": 9.5, "ok": true, "x": NaN}\n'
                    '{"step": 3, "d_loss": 0.5, "fid": 8.0, "is": 2}\n{"step": 4, "d_lo')
    records = read_records(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert metric_keys(records) == ["fid", "is"]
    assert curves(records, ["fid", "d_loss"]) == {"fid": [(2.0, 9.5), (3.0, 8.0)], "d_loss": [(1.0, 1.0), (3.0, 0.5)]}


def test_latest_sample_grid_is_the_highest_step(tmp_path):
    assert latest_sample_grid(tmp_path) is None
    (tmp_path / "samples").mkdir()
    for step in (900, 10000, 2000):
        (tmp_path / "samples" / f"step-{step:07d}.png").touch()
    (tmp_path / "samples" / "other.png").touch()
    assert latest_sample_grid(tmp_path) == (10000, tmp_path / "samples" / "step-0010000.png")


def _near(pixels, colour, tolerance=40):
    return int((np.abs(pixels.astype(int) - np.array(colour)).sum(axis=2) < tolerance).sum())


def test_line_chart_draws_series_in_their_colours():
    blue, red = (31, 119, 180), (214, 39, 40)
    chart = line_chart({"a": [(0, 0.0), (10, 1.0)], "b": [(5, 0.5)]}, "t", size=(300, 200))
    assert chart.size == (300, 200)
    pixels = np.asarray(chart)
    assert _near(pixels, blue) > 200  # a's diagonal line (and its legend key)
    assert 10 < _near(pixels, red) < 150  # b's single dot (and its legend key), no line
    empty = np.asarray(line_chart({"a": []}, "nothing", size=(300, 200)))
    assert empty.shape == (200, 300, 3) and _near(empty, blue) == 0


def test_prefixed_keys_share_one_chart():
    from sngan.report.page import chart_groups

    records = [{"step": 1, "fid5k": 3.0, "sn_ratio_min": 0.9, **{f"sn_ratio/l{i}": 0.9 for i in range(20)}}]
    groups = chart_groups(records)
    assert [title for title, _ in groups] == ["fid5k", "sn_ratio_min", "sn_ratio/* (20 series)"]
    assert len(groups[-1][1]) == 20


def test_report_on_a_study_folder_says_where_its_table_is_and_what_draws_it(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / ".sngan-study").write_text("")
    (study / "study.md").write_text("# table\n")
    (study / "is_bars.png").write_bytes(b"")
    for args in (["report", str(study)], ["report", str(study), "--out", str(tmp_path / "r.png")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert "is a study folder, not a run: its table is" in result.output and "is_bars.png" in result.output
        assert f"sngan study --plan PLAN --out {study}" in result.output
    assert not (tmp_path / "r.png").exists()


def test_report_writes_its_default_file_only_into_a_run_folder(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "d_loss": 1.0, "g_loss": 1.0, "lr": 1e-4}\n')
    (tmp_path / "report.png").write_bytes(b"mine")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a run folder sngan made" in one_line(result)
    assert (tmp_path / "report.png").read_bytes() == b"mine"


def test_a_thin_sample_grid_is_refused_before_resizing(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    grid = sorted((run / "samples").glob("step-*.png"))[-1]
    Image.new("RGB", (1, 60_000), "white").save(grid)  # few pixels, one absurd side
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1 and "too large for a sample grid" in one_line(result)


def test_report_draws_a_run_with_a_non_utf8_config_and_huge_values(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "config.yaml").write_bytes(b"\xff\xfe not utf-8")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "fid": 1e308, "d_loss": -1e308, "is": 1e400}\n')
        fh.write('{"step": 5, "fid": 1' + "0" * 400 + "}\n")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.png").stat().st_size > 0
