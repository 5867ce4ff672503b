"""Warnings are shown when they happen: one line per distinct message at once, a count at the end for repeats, kept
in the run's log.txt with its time, and kept when the command fails."""

import re
import warnings

import pytest
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import SamplingError, SnganError
from sngan.progress import warning_lines
from tests.helpers import write_config

runner = CliRunner()

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_each_distinct_warning_is_said_when_raised_and_repeats_are_counted_at_the_end():
    said: list[str] = []
    with warning_lines(said.append):
        warnings.warn("disk almost full", UserWarning, stacklevel=1)
        assert said == ["warning: UserWarning: disk almost full"]  # at once, not when the block ends
        for _ in range(2):
            warnings.warn("disk almost full", UserWarning, stacklevel=1)
        warnings.warn("slow  kernel\n  path", RuntimeWarning, stacklevel=1)
        assert len(said) == 2
    assert said == ["warning: UserWarning: disk almost full", "warning: RuntimeWarning: slow kernel path",
                    "warning: UserWarning: disk almost full (raised 3 times in all)"]


def test_warnings_are_kept_when_the_block_fails():
    said: list[str] = []
    with pytest.raises(SnganError), warning_lines(said.append):
        warnings.warn("first", UserWarning, stacklevel=1)
        warnings.warn("first", UserWarning, stacklevel=1)
        raise SnganError("boom")
    assert said == ["warning: UserWarning: first", "warning: UserWarning: first (raised 2 times in all)"]


def test_a_training_warning_is_printed_before_the_run_ends_and_kept_in_log_txt_also_on_failure(tmp_path,
                                                                                                monkeypatch):
    """A warning raised at every iteration: one line when first raised (before the step-2 record), one count line,
    both in log.txt with their times; the run then fails at step 3 and its error line is the last on stderr."""
    import sngan.train.loop as loop

    real = loop.iteration

    def warning_iteration(state, losses):
        if state.step == 2:
            raise SnganError("the data went away at step 2")
        warnings.warn("a slow path is in use", UserWarning, stacklevel=1)
        return real(state, losses)

    monkeypatch.setattr(loop, "iteration", warning_iteration)
    config = write_config(tmp_path / "c.yaml", {"train": {"iterations": 4, "log_every": 1}})
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--out", str(run), "--no-progress"])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip().splitlines()
    assert err == ["warning: UserWarning: a slow path is in use",
                   "warning: UserWarning: a slow path is in use (raised 2 times in all)",
                   "error: the data went away at step 2"]
    log = (run / "log.txt").read_text().splitlines()
    kept = [line for line in log if "a slow path" in line]
    assert len(kept) == 2 and all(re.match(STAMP + " warning: UserWarning: a slow path", line) for line in kept)
    first_record = next(i for i, line in enumerate(log) if " step 1/4 " in line)
    assert log.index(kept[0]) < first_record  # said during step 1, before its record
    assert log[-1].endswith("error: the data went away at step 2")


def test_a_warning_is_one_line_after_a_success_and_kept_before_the_error_line_after_a_failure(tiny_runs, tmp_path,
                                                                                             monkeypatch):

    import sngan.sample.command as sample_command

    real_export = sample_command.export

    def warn_then(fail):
        def export(*args, **kwargs):
            warnings.warn("a library's note\nspread over two lines", UserWarning, stacklevel=1)
            if fail:
                raise SamplingError("the real cause")
            return real_export(*args, **kwargs)
        return export

    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    monkeypatch.setattr(sample_command, "export", warn_then(True))
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png"), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["warning: UserWarning: a library's note spread over two lines",
                                                  "error: the real cause"]  # the warning kept, the error line last
    monkeypatch.setattr(sample_command, "export", warn_then(False))
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png"), "--no-progress"])
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines() == ["warning: UserWarning: a library's note spread over two lines"]
