"""Progress of the passes that are not training: plain lines with counts and ETA off a terminal, and the estimate
of a long pass before the user waits."""

import types

from sngan import progress as progress_module
from sngan.progress import PassProgress, eta


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def _run(monkeypatch, total, per_step, seconds_per_step, hint=""):
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    lines = []
    bar = PassProgress(total, "inception pass", True, log=lines.append, hint=hint)
    done = 0
    while done < total:
        clock.now += seconds_per_step
        bar.update(per_step)
        done += per_step
    bar.close()
    return lines


def test_off_a_terminal_a_plain_line_every_10_s_with_count_rate_and_eta(monkeypatch):
    lines = _run(monkeypatch, total=1000, per_step=100, seconds_per_step=4.0)  # 25 img/s, 40 s in all
    progress_lines = [line for line in lines if "ETA" in line]
    assert progress_lines == ["inception pass: 300/1000 img (30%), 25.0 img/s, ETA 28s",
                              "inception pass: 600/1000 img (60%), 25.0 img/s, ETA 16s",
                              "inception pass: 900/1000 img (90%), 25.0 img/s, ETA 4s"]
    assert not any("will take" in line for line in lines)  # 40 s is not a long pass


def test_a_pass_measured_longer_than_10_minutes_is_announced_once_with_the_hint(monkeypatch):
    lines = _run(monkeypatch, total=50000, per_step=250, seconds_per_step=5.0, hint=" (hint)")  # 50 img/s: 1000 s
    announced = [line for line in lines if "will take" in line]
    assert announced == ["inception pass: 50000 img will take about 16m40s at the measured 50.0 img/s (hint)"]
    assert lines.index(announced[0]) < 2  # before the wait, not after


def test_disabled_progress_prints_nothing(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    lines = []
    bar = PassProgress(100, "x", False, log=lines.append)
    for _ in range(10):
        clock.now += 100
        bar.update(10)
    assert lines == [] and eta(3725) == "1h02m05s"


def test_sampling_reports_progress_off_a_terminal_with_counts_and_eta(monkeypatch, capsys):
    """issue 30 section 3: `sngan sample` follows the rule of every other pass (a plain line every 10 s)."""
    import torch

    from sngan.config import ModelConfig
    from sngan.models import build_generator

    clock = Clock()

    def tick():
        clock.now += 3.0  # each reading of the clock is 3 s later: a slow generator
        return clock.now

    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=tick))
    from sngan.sample.generate import generate_batches

    generator = build_generator(ModelConfig(arch="resnet", resolution=32, z_dim=16, g_ch=8, d_ch=8))
    batches = list(generate_batches(generator, torch.randn(40, generator.z_dim), None, batch_size=4, progress=True))
    assert sum(len(b) for b in batches) == 40
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sample: ")]
    assert lines and all(" img (" in line and "ETA" in line for line in lines)
    assert lines[0] == "sample: 16/40 img (40%), 1.3 img/s, ETA 18s"  # 3 s per clock reading, rate after batch 1
    list(generate_batches(generator, torch.randn(8, generator.z_dim), None, batch_size=4, progress=False))
    assert capsys.readouterr().err == ""
