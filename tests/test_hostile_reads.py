"""Every file sngan reads is hostile input (issue 24, group 5): statistics, a run's config and its log."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import MetricError
from sngan.metrics.stats import load_stats


@pytest.mark.parametrize("protocol", [np.array([1, 2]), np.array(5.0), np.array('["a"]')])
def test_a_statistics_protocol_that_is_not_an_object_is_one_error(tmp_path, protocol):
    path = tmp_path / "ref.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4), protocol=protocol)
    with pytest.raises(MetricError, match="'protocol' must be a JSON object|cannot read statistics"):
        load_stats(path)


def test_report_draws_a_run_with_a_non_utf8_config_and_huge_values(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "config.yaml").write_bytes(b"\xff\xfe not utf-8")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "fid": 1e308, "d_loss": -1e308, "is": 1e400}\n')
        fh.write('{"step": 5, "fid": 1' + "0" * 400 + "}\n")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.png").stat().st_size > 0
