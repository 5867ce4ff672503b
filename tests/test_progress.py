"""Training output: one plain line per record off a terminal (and with --no-progress), a bar on a terminal, and
the same lines in the run folder's log.txt."""

import io
import re

from sngan.config import load_config
from sngan.progress import on_terminal
from sngan.train.loop import train
from sngan.train.runlog import eta, log_line
from tests.helpers import write_config

LINE = re.compile(r"step (\d+)/\d+ \| d_loss -?\d+\.\d{4} \| g_loss -?\d+\.\d{4} \| lr \d\.\d\de-\d\d \| "
                  r"\d+\.\d it/s \| mem cpu \d+\.\d\d GB( cuda \d+\.\d\d GB)? \| ETA \S+")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_eta_and_the_line_say_what_is_left():
    assert (eta(3725), eta(65), eta(7)) == ("1h02m05s", "1m05s", "7s")
    record = {"step": 100, "d_loss": 1.5, "g_loss": -0.25, "lr": 2e-4, "it_per_s": 20.0}
    assert log_line(record, 900) == "step 100/900 | d_loss 1.5000 | g_loss -0.2500 | lr 2.00e-04 | 20.0 it/s | ETA 40s"
    peaks = {**record, "cpu_mem_gb": 1.234, "cuda_mem_gb": 7.2}
    assert log_line(peaks, 900) == ("step 100/900 | d_loss 1.5000 | g_loss -0.2500 | lr 2.00e-04 | 20.0 it/s | mem "
                                    "cpu 1.23 GB cuda 7.20 GB | ETA 40s")


def test_a_record_carries_the_peak_resident_memory_of_the_process():
    """issue 30 section 6: cpu_mem_gb is the peak RSS (ru_maxrss, KiB on Linux); it grows past a 200 MiB buffer
    touched here, and no cuda key is written off CUDA."""
    import resource

    import numpy as np
    import torch

    from sngan.train.steps import LossWindow

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    buffer = np.ones(200 * 2 ** 20, np.uint8)  # touched: resident
    window = LossWindow(torch.device("cpu"), 0)
    window.add(torch.tensor(1.0), torch.tensor(2.0))
    record = window.record(1, 2e-4)
    assert set(record) >= {"cpu_mem_gb"} and "cuda_mem_gb" not in record
    assert record["cpu_mem_gb"] >= max(before, buffer.sum() / 2 ** 30)
    assert 0.05 < record["cpu_mem_gb"] < 64


def test_bar_only_on_a_terminal():
    assert on_terminal(Terminal()) and not on_terminal(io.StringIO())


STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z (.*)")


def _kept(path):
    """log.txt as (seconds since the epoch, UTC, line) pairs; every line must carry its time."""
    import calendar

    out = []
    for line in path.read_text().splitlines():
        m = STAMP.fullmatch(line)
        assert m, line
        out.append((calendar.timegm(tuple(int(v) for v in m.groups()[:6])), m.group(7)))
    return out


def test_off_a_terminal_every_record_is_one_line_printed_and_kept_in_log_txt(tmp_path, capsys):
    import time

    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 6, "log_every": 2}})
    lines = []
    before = time.time()
    train(load_config(config), tmp_path / "run", progress=True, log=lines.append)  # pytest's stderr: no TTY
    printed = [m.group(1) for line in lines if (m := LINE.fullmatch(line))]
    assert printed == ["2", "4", "6"]
    assert "\r" not in capsys.readouterr().err  # no bar redraws
    kept = _kept(tmp_path / "run" / "log.txt")
    # every printed line, the start notices before the folder opened and the done line included, in order
    assert [line for _, line in kept] == lines
    assert lines[0].startswith("training step: ") and lines[-1].startswith("done: step 6")
    assert all(int(before) <= when <= time.time() + 1 for when, _ in kept)  # UTC, not local time


def test_no_progress_still_prints_the_lines_and_a_terminal_gets_the_bar_instead(tmp_path, monkeypatch):
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 4, "log_every": 2}})
    lines = []
    train(load_config(config), tmp_path / "quiet", progress=False, log=lines.append)
    assert sum(bool(LINE.fullmatch(line)) for line in lines) == 2
    monkeypatch.setattr("sys.stderr", Terminal())
    lines = []
    train(load_config(config), tmp_path / "tty-quiet", progress=False, log=lines.append)
    assert sum(bool(LINE.fullmatch(line)) for line in lines) == 2  # no bar asked for: lines on a terminal too
    assert "train:" not in __import__("sys").stderr.getvalue()
    lines = []
    train(load_config(config), tmp_path / "tty", progress=True, log=lines.append)
    assert not any(LINE.fullmatch(line) for line in lines)
    assert "train" in __import__("sys").stderr.getvalue()  # the bar drew there
    assert len((tmp_path / "tty" / "log.txt").read_text().splitlines()) >= 2  # the lines still go to the file
