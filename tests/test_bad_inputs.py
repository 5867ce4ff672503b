"""Every bad input is one line on stderr, a non-zero exit, and leaves existing run files untouched."""

import os

import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import load_config
from sngan.train.loop import train


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from tests.helpers import write_config

    root = tmp_path_factory.mktemp("bad")
    config = write_config(root / "tiny.yaml")
    train(load_config(config), root / "run", progress=False, log=lambda s: None)
    ckpt = root / "run" / "checkpoints" / "ckpt-0000003.pt"
    (root / "malformed.yaml").write_text("train: {iterations: 3\n")
    data = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 3])
    (root / "notes.pt").write_text("not a checkpoint\n")
    evil = torch.load(ckpt, weights_only=True)
    evil["payload"] = Payload()
    torch.save(evil, root / "evil.pt")
    (root / "empty").mkdir()
    return root


TRAIN = ["train", "--config", "tiny.yaml"]
CASES = {  # name: (command line, fragment the one-line error must contain)
    "malformed yaml": (["train", "--config", "malformed.yaml", "--out", "run"], "malformed YAML"),
    "unknown key": ([*TRAIN, "--set", "train.iteratons=5", "--out", "run"], "did you mean 'iterations'"),
    "wrong type": ([*TRAIN, "--set", "train.batch_size=big", "--out", "run"], "'train.batch_size' must be int"),
    "negative lr": ([*TRAIN, "--set", "optim.lr=-1", "--out", "run"], "'optim.lr' must be > 0"),
    "missing data root": ([*TRAIN, "--set", "data.name=folder", "--set", "data.root=nowhere", "--out", "fresh"],
                          "is not a folder"),
    "empty folder": ([*TRAIN, "--set", "data.name=folder", "--set", "data.root=empty", "--out", "fresh"],
                     "class folder"),
    "new run over old": ([*TRAIN, "--out", "run"], "already holds checkpoints"),
    "truncated resume": ([*TRAIN, "--resume", "truncated.pt", "--out", "run"], "truncated or corrupt"),
    "truncated sample": (["sample", "--ckpt", "truncated.pt", "--out", "x.png"], "truncated or corrupt"),
    "other model": ([*TRAIN, "--set", "model.d_ch=16", "--resume", "run/checkpoints/ckpt-0000003.pt"],
                    "changes the model (d_ch)"),
    "not a checkpoint": (["sample", "--ckpt", "notes.pt", "--out", "x.png"], "not a PyTorch checkpoint"),
    "malicious resume": ([*TRAIN, "--resume", "evil.pt", "--out", "run"], "pickled Python objects"),
    "malicious sample": (["sample", "--ckpt", "evil.pt", "--out", "x.png"], "pickled Python objects"),
    "missing checkpoint": (["sample", "--ckpt", "nothing.pt", "--out", "x.png"], "checkpoint not found"),
    "bad device": (["sample", "--ckpt", "run/checkpoints/ckpt-0000003.pt", "--out", "x.png", "--device", "gpu"],
                   "device must be auto, cpu, cuda or cuda:N"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(workspace, monkeypatch, case):
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    args, expected = CASES[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (case, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(workspace) == before, case
    assert not (workspace / "PWNED").exists() and not (workspace / "fresh").exists()
