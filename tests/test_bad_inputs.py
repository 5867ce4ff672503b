"""Every bad input is one line on stderr, exit code 1, and leaves the run folder, checkpoints and data byte-identical.

One table of cases, each a command line and a fragment its one-line error must contain. The workspace holds a
finished tiny run, damaged and crafted checkpoints, and bad configs; its bytes are compared before and after each
case (the run folder's `.lock` file excepted: it holds the PID of the last process that locked the folder).
"""

import os

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import load_config
from sngan.io import FolderLock
from sngan.train.loop import train
from tests.helpers import TINY, write_config


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def write_yaml_text(path, text):
    path.write_text(text)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    config = write_config(root / "tiny.yaml")
    train(load_config(config), root / "run", progress=False, log=lambda s: None)
    ckpt = root / "run" / "checkpoints" / "ckpt-0000003.pt"
    good = torch.load(ckpt, weights_only=True)
    data = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 3])
    (root / "notes.pt").write_text("not a checkpoint\n")
    crafted = {
        "evil": {**good, "payload": Payload()},
        "no_opt": {k: v for k, v in good.items() if k != "opt_g"},
        "no_rng": {**good, "rng": None, "rng_ranks": None},
        "bad_shape": {**good, "discriminator": {**good["discriminator"], next(iter(good["discriminator"])):
                                                torch.zeros(3, 3)}},
        "extra_tensor": {**good, "generator": {**good["generator"], "surprise": torch.zeros(1)}},
        "config_list": {**good, "config": [1, 2]},
        "negative_step": {**good, "step": -4},
        "future": {**good, "format_version": 99},
        "bad_opt_shape": {**good, "opt_d": {**good["opt_d"], "state": {0: {"exp_avg": torch.zeros(7),
                                                                            "exp_avg_sq": torch.zeros(7)}}}},
    }
    for name, state in crafted.items():
        torch.save(state, root / f"{name}.pt")
    texts = {
        "malformed": "train: {iterations: 3\n",
        "empty": "",
        "only_comments": "# nothing here\n",
        "a_list": "- 1\n- 2\n",
        "dup_section": "train:\n  iterations: 3\ntrain:\n  n_dis: 1\n",
        "dup_key": "train:\n  iterations: 3\n  iterations: 4\n",
        "alias": "base: &b {iterations: 3}\ntrain: *b\n",
        "merge": "a: &a {iterations: 3}\ntrain:\n  <<: *a\n",
        "section_scalar": "train: 5\n",
    }
    for name, text in texts.items():
        write_yaml_text(root / f"{name}.yaml", text)
    (root / "cnn_cond.yaml").write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "arch": "cnn",
                                                                             "num_classes": 3}}))
    (root / "empty").mkdir()
    (root / "a_file").write_text("I am a file\n")
    (root / "existing.png").write_bytes(b"\x89PNG old grid")
    return root


TRAIN = ["train", "--config", "tiny.yaml"]
DRY = [*TRAIN, "--dry-run"]
CK = "run/checkpoints/ckpt-0000003.pt"
SAMPLE = ["sample", "--ckpt", CK]
CASES = {  # name: (command line, fragment the one-line error must contain)
    # configs
    "malformed yaml": (["train", "--config", "malformed.yaml", "--out", "fresh"], "malformed YAML"),
    "empty config": (["train", "--config", "empty.yaml", "--out", "fresh"], "config file is empty"),
    "comments-only config": (["train", "--config", "only_comments.yaml", "--out", "fresh"], "config file is empty"),
    "config is a list": (["train", "--config", "a_list.yaml", "--dry-run"], "must be a mapping"),
    "duplicate section": (["train", "--config", "dup_section.yaml", "--dry-run"], "duplicate key 'train' at lines 1"),
    "duplicate key": (["train", "--config", "dup_key.yaml", "--dry-run"], "duplicate key 'iterations' at lines 2"),
    "yaml alias": (["train", "--config", "alias.yaml", "--dry-run"], "aliases"),
    "yaml merge key": (["train", "--config", "merge.yaml", "--dry-run"], "aliases"),
    "section not a mapping": (["train", "--config", "section_scalar.yaml", "--dry-run"], "must be a mapping"),
    "missing config": (["train", "--config", "nothere.yaml", "--out", "fresh"], "config file not found"),
    "no config nor resume": (["train", "--out", "fresh"], "--config FILE is required"),
    "unknown key": ([*TRAIN, "--set", "train.iteratons=5", "--out", "run"], "did you mean 'iterations'"),
    "unknown section": ([*DRY, "--set", "trian.iterations=5"], "unknown section 'trian'"),
    "override without =": ([*DRY, "--set", "train.iterations"], "must look like section.key=value"),
    "override without section": ([*DRY, "--set", "iterations=5"], "must look like section.key"),
    "wrong type": ([*TRAIN, "--set", "train.batch_size=big", "--out", "run"], "'train.batch_size' must be int"),
    "negative lr": ([*TRAIN, "--set", "optim.lr=-1", "--out", "run"], "'optim.lr' must be > 0"),
    "infinite lr": ([*DRY, "--set", "optim.lr=.inf"], "'optim.lr' must be a finite number"),
    "nan lr": ([*DRY, "--set", "optim.lr=.nan"], "'optim.lr' must be a finite number"),
    "beta1 above 1": ([*DRY, "--set", "optim.beta1=1.5"], "'optim.beta1' must be <= 1"),
    "huge z_dim": ([*TRAIN, "--set", "model.z_dim=1000000000", "--out", "fresh"], "'model.z_dim' must be <= 4096"),
    "huge z_dim dry run": ([*DRY, "--set", "model.z_dim=1000000000"], "'model.z_dim' must be <= 4096"),
    "too many parameters": ([*DRY, "--set", "model.g_ch=4096", "--set", "model.resolution=128"],
                            "over the limit of 2,000,000,000"),
    "huge batch": ([*DRY, "--set", "train.batch_size=1000000000"], "'train.batch_size' must be <= 65536"),
    "huge synthetic set": ([*DRY, "--set", "data.num_images=1000000", "--set", "model.resolution=128"],
                           "GiB limit for synthetic"),
    "zero iterations": ([*DRY, "--set", "train.iterations=0"], "'train.iterations' must be >= 1"),
    "zero n_dis": ([*DRY, "--set", "train.n_dis=0"], "'train.n_dis' must be >= 1"),
    "odd resolution": ([*DRY, "--set", "model.resolution=33"], "'model.resolution' must be one of"),
    "conditional cnn": (["train", "--config", "cnn_cond.yaml", "--dry-run"], "must be 0 for arch cnn"),
    "decay start past the end": ([*DRY, "--set", "optim.lr_decay_start=3"], "must be < train.iterations"),
    "bad train device": ([*DRY, "--set", "train.device=gpu"], "'train.device' must be one of"),
    # data
    "missing data root": ([*TRAIN, "--set", "data.name=folder", "--set", "data.root=nowhere", "--out", "fresh"],
                          "is not a folder"),
    "empty folder": ([*TRAIN, "--set", "data.name=folder", "--set", "data.root=empty", "--out", "fresh"],
                     "class folder"),
    # run folders
    "new run over old": ([*TRAIN, "--out", "run"], "already holds checkpoints"),
    "out is a file": ([*TRAIN, "--out", "a_file"], "a_file"),
    "out under a file": ([*TRAIN, "--out", "a_file/run"], "a_file"),
    "resume auto without checkpoints": ([*TRAIN, "--resume", "auto", "--out", "empty"], "no checkpoint in"),
    "resume auto without a run": (["train", "--resume", "auto"], "--resume auto needs --out"),
    # checkpoints given to train
    "truncated resume": ([*TRAIN, "--resume", "truncated.pt", "--out", "run"], "truncated or corrupt"),
    "not a checkpoint resume": ([*TRAIN, "--resume", "notes.pt", "--out", "run"], "not a PyTorch checkpoint"),
    "malicious resume": ([*TRAIN, "--resume", "evil.pt", "--out", "run"], "pickled Python objects"),
    "other model": ([*TRAIN, "--set", "model.d_ch=16", "--resume", CK], "changes the model (d_ch)"),
    "resume without optimizer": ([*TRAIN, "--resume", "no_opt.pt", "--out", "run"], "opt_g is missing"),
    "resume without rng": ([*TRAIN, "--resume", "no_rng.pt", "--out", "run"], "random-generator states"),
    "resume with a wrong shape": ([*TRAIN, "--resume", "bad_shape.pt", "--out", "run"], "has shape (3, 3)"),
    "resume with an extra tensor": ([*TRAIN, "--resume", "extra_tensor.pt", "--out", "run"], "'surprise'"),
    "resume with config a list": ([*TRAIN, "--resume", "config_list.pt", "--out", "run"], "not a mapping"),
    "resume with a negative step": ([*TRAIN, "--resume", "negative_step.pt", "--out", "run"], "non-negative"),
    "resume from the future": ([*TRAIN, "--resume", "future.pt", "--out", "run"], "newer than this sngan"),
    "resume with bad Adam moments": ([*TRAIN, "--resume", "bad_opt_shape.pt", "--out", "run"], "has shape (7,)"),
    # checkpoints given to sample
    "truncated sample": (["sample", "--ckpt", "truncated.pt", "--out", "x.png"], "truncated or corrupt"),
    "not a checkpoint sample": (["sample", "--ckpt", "notes.pt", "--out", "x.png"], "not a PyTorch checkpoint"),
    "malicious sample": (["sample", "--ckpt", "evil.pt", "--out", "x.png"], "pickled Python objects"),
    "missing checkpoint": (["sample", "--ckpt", "nothing.pt", "--out", "x.png"], "checkpoint not found"),
    "sample a wrong shape": (["sample", "--ckpt", "extra_tensor.pt", "--out", "x.png"], "'surprise'"),
    "bad device": ([*SAMPLE, "--out", "x.png", "--device", "gpu"], "device must be auto, cpu, cuda or cuda:N"),
    # sample requests
    "a billion images": ([*SAMPLE, "--out", "many", "--num", "1000000000"], "--num 1000000000 is over the limit"),
    "a grid too large": ([*SAMPLE, "--out", "big.png", "--num", "100000"], "images in one grid"),
    "npz too large": ([*SAMPLE, "--out", "big.npz", "--num", "1000000"], "bytes (the npz is assembled"),
    "huge batch size": ([*SAMPLE, "--out", "x.png", "--batch-size", "1000000"], "--batch-size 1000000"),
    "huge nrow": ([*SAMPLE, "--out", "x.png", "--nrow", "1000000"], "--nrow 1000000"),
    "huge interpolation": ([*SAMPLE, "--out", "i.gif", "--interpolate", "1000000"], "--interpolate 1000000"),
    "class of unconditional": ([*SAMPLE, "--out", "x.png", "--class", "1"], "this model is unconditional"),
    "classes not a list": ([*SAMPLE, "--out", "x.png", "--classes", "a,b"], "comma-separated class indices"),
    "existing output": ([*SAMPLE, "--out", "existing.png"], "exists; choose another --out or add --force"),
    "png into a folder": ([*SAMPLE, "--out", "empty", "--format", "grid"], "is a folder"),
    "unknown format": ([*SAMPLE, "--out", "x.png", "--format", "jpeg"], "--format must be one of"),
    "unknown extension": ([*SAMPLE, "--out", "x.bmp"], "cannot tell the format"),
    "one-step interpolation": ([*SAMPLE, "--out", "i.gif", "--interpolate", "1"], "at least 2 steps"),
    "folder export into a file": ([*SAMPLE, "--out", "a_file", "--format", "folder"], "is a file"),
    # other commands
    "eval missing checkpoint": (["eval", "--ckpt", "nothing.pt"], "checkpoint not found"),
    "eval unknown protocol": (["eval", "--ckpt", CK, "--protocol", "bogus"], "--protocol must be one of"),
    "report missing folder": (["report", "nowhere"], "not found"),
    "report not a png": (["report", "run", "--out", "r.jpg"], "must be a .png"),
    "inspect missing checkpoint": (["inspect", "--ckpt", "nothing.pt"], "checkpoint not found"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_1_and_changes_nothing(workspace, monkeypatch, case):
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    args, expected = CASES[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, (case, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (case, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(workspace) == before, case
    assert not (workspace / "PWNED").exists() and not (workspace / "fresh").exists()
    assert not any(workspace.glob("*.npz")) and not (workspace / "many").exists()


def test_the_table_has_at_least_60_cases():
    assert len(CASES) >= 60


def test_a_run_folder_in_use_is_refused_naming_the_holder(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    lock = FolderLock(workspace / "run")
    try:
        result = CliRunner().invoke(app, ["train", "--out", "run", "--resume", "auto"])
    finally:
        lock.release()
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: '{workspace / 'run'}' is in use by another sngan process (PID "
                                     f"{os.getpid()}): wait for it to finish or choose another --out")
    assert snapshot(workspace) == before
