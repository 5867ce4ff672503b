"""TensorBoard events of a run: grouped tags, wall time as the events' own time, sample grids as images, and a
resume at step S that keeps step S (purge_step S + 1)."""

import json
import time

import pytest
from PIL import Image

from sngan.config import load_config
from sngan.train.loop import train
from sngan.train.runlog import scalars, tensorboard_tag
from tests.helpers import write_config


def test_tags_are_the_metrics_keys_in_groups_and_time_is_not_a_scalar():
    keys = ("d_loss", "g_loss", "lr", "sn_ratio/block1.c1", "sn_ratio_min", "lipschitz_bound", "fid5k_train50k",
            "cpu_mem_gb")
    assert [tensorboard_tag(k) for k in keys] == \
        ["loss/d_loss", "loss/g_loss", "train/lr", "sn/sn_ratio/block1.c1", "sn/sn_ratio_min", "sn/lipschitz_bound",
         "metrics/fid5k_train50k", "resources/cpu_mem_gb"]
    assert all(tensorboard_tag(k).split("/", 1)[1] == k for k in keys)  # issue 38: the tag ends in the key
    assert scalars({"step": 3, "time": 1.7e9, "d_loss": 1.0, "eval_network": "x", "bad": float("nan")}) == \
        {"loss/d_loss": 1.0}


def test_resumed_run_keeps_the_resume_step_and_shows_grids_with_wall_times(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 4, "inspect_every": 2}})
    run = tmp_path / "run"
    start = time.time()
    train(load_config(config), run, progress=False, log=lambda s: None)
    train(load_config(config), run, resume=run / "checkpoints" / "ckpt-0000002.pt", progress=False,
          log=lambda s: None)
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/d_loss", "loss/g_loss", "train/lr", "train/it_per_s", "resources/cpu_mem_gb",
            "sn/lipschitz_bound"} <= set(tags["scalars"])
    assert "time" not in tags["scalars"] and "d_loss" not in tags["scalars"]
    events = acc.Scalars("loss/d_loss")
    assert [e.step for e in events] == [1, 2, 3, 4]  # step 2 survives the resume from step 2
    assert all(start - 1 < e.wall_time < time.time() + 1 for e in events)
    assert [e.step for e in acc.Images("samples")] == [2, 4]


def test_the_run_log_writes_each_record_and_grid_to_every_sink_and_closes_them(tmp_path):
    from sngan.train.rundir import RunFolder
    from sngan.train.runlog import RunLog, TensorBoardSink

    class Recorder:
        def __init__(self):
            self.seen = []

        def write(self, record):  # metrics.jsonl first: readers use it
            kept = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
            self.seen.append(("write", record["step"], [json.loads(line)["step"] for line in kept]))

        def grid(self, path, step):
            self.seen.append(("grid", step))

        def close(self):
            self.seen.append(("close",))

    pytest.importorskip("tensorboard")
    folder = RunFolder.open(tmp_path / "run", "data: {}\n")
    run_log = RunLog(folder)
    assert [type(s) for s in run_log.sinks] == [TensorBoardSink]
    recorder = Recorder()
    run_log.sinks.append(recorder)
    run_log.log({"step": 1, "d_loss": 0.5})
    grid = tmp_path / "g.png"
    Image.new("RGB", (4, 4)).save(grid)
    run_log.grid(grid, 1)
    run_log.close()
    folder.close()
    assert recorder.seen == [("write", 1, [1]), ("grid", 1), ("close",)]
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
