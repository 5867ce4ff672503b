"""Every bad input is one line on stderr and its exit code (docs/README.md "Exit codes"), and leaves every existing file
byte-identical: the run folder, its checkpoints, the data and the configs.

The table runs in-process (typer's CliRunner) on copies of the session's tiny finished runs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import write_config


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def variant(state: dict, change: Callable[[dict], None]) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
    change(out)
    return out


CKPT = "run/checkpoints/ckpt-0000003.pt"
COND = "cond/checkpoints/ckpt-0000003.pt"
YAML = {
    "malformed.yaml": "train: {iterations: 3\n",
    "empty.yaml": "",
    "emptymap.yaml": "{}\n",
    "list.yaml": "- train\n",
    "dupkey.yaml": "train:\n  iterations: 3\n  iterations: 4\n",
    "dupsection.yaml": "train:\n  iterations: 3\nmodel:\n  z_dim: 16\ntrain:\n  n_dis: 1\n",
    "alias.yaml": "base: &b {iterations: 3}\ntrain: *b\n",
    "scalar_section.yaml": "train: 5\n",
    "huge.yaml": "# padding\n" * 120_000 + "train: {iterations: 3}\n",
}
D_KEY = "linear.parametrizations.weight.0._u"  # the final layer's spectral-norm vector
BROKEN_CHECKPOINTS = {  # file name: change to a good checkpoint
    "wrong_shape.pt": lambda s: s["generator"].update({"l1.weight": torch.zeros(3, 3)}),
    "missing_key.pt": lambda s: s["generator"].pop("l1.weight"),
    "extra_key.pt": lambda s: s["generator"].update({"stowaway": torch.zeros(1)}),
    "d_wrong_shape.pt": lambda s: s["discriminator"].update({D_KEY: torch.zeros(7)}),
    "d_extra_key.pt": lambda s: s["discriminator"].update({"stowaway": torch.zeros(1)}),
    "no_opt_g.pt": lambda s: s.pop("opt_g"),
    "no_rng.pt": lambda s: s.pop("rng"),
    "rng_no_data.pt": lambda s: s.update({"rng": {k: v for k, v in s["rng"].items() if k != "data"}}),
    "opt_groups.pt": lambda s: s.update({"opt_d": {"state": {}, "param_groups": []}}),
    "opt_moment_shape.pt": lambda s: s.update({"opt_g": {**s["opt_g"], "state": {
        0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2, 2), "exp_avg_sq": torch.zeros(2, 2)}}}}),
    "config_string.pt": lambda s: s.update({"config": "model: resnet"}),
    "config_section_list.pt": lambda s: s.update({"config": {"model": [1, 2]}}),
    "negative_step.pt": lambda s: s.update({"step": -4}),
    "newer_format.pt": lambda s: s.update({"format_version": 99}),
    "generator_list.pt": lambda s: s.update({"generator": [1, 2, 3]}),
    "nan_g.pt": lambda s: s.update({"generator": {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                                                  for k, v in s["generator"].items()}}),
    "nan_d.pt": lambda s: s.update({"discriminator": {**s["discriminator"], D_KEY: torch.full((1,), float("inf"))}}),
    "huge_d.pt": lambda s: s.update({"config": {**s["config"], "model": {**s["config"]["model"], "d_ch": 4096,
                                                                         "resolution": 128}}}),
    "no_model.pt": lambda s: s.update({"config": {k: v for k, v in s["config"].items() if k != "model"}}),
    "d_list.pt": lambda s: s.update({"discriminator": [1, 2]}),
}


@pytest.fixture(scope="module")
def workspace(tiny_runs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    shutil.copytree(tiny_runs["uncond"], root / "run")
    shutil.copytree(tiny_runs["cond"], root / "cond")
    write_config(root / "tiny.yaml")
    for name, text in YAML.items():
        (root / name).write_text(text)
    ckpt = root / CKPT
    data = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 3])
    (root / "notes.pt").write_text("not a checkpoint\n")
    good = torch.load(ckpt, weights_only=True)
    torch.save({**good, "payload": Payload()}, root / "evil.pt")
    assert "l1.weight" in good["generator"] and D_KEY in good["discriminator"]
    for name, change in BROKEN_CHECKPOINTS.items():
        torch.save(variant(good, change), root / name)
    (root / "empty").mkdir()
    (root / "nockpt").mkdir()
    (root / "afile").write_text("a file, not a folder\n")
    (root / "taken.png").write_bytes(b"an earlier grid")
    plant_links_and_foreign_folders(root)
    plant_outputs_and_hostile_files(root)
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels (a decompression bomb's header) and holds no image data."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def plant_outputs_and_hostile_files(root: Path) -> None:
    """Existing outputs (group 4) and files nested too deep or lying about their size (group 5)."""
    (root / "taken.npz").write_bytes(b"earlier statistics")
    (root / "taken.json").write_text("{}\n")
    (root / "mixed").mkdir()
    (root / "mixed" / "00000.png").write_bytes(b"an earlier export")
    (root / "mixed" / "notes.txt").write_text("mine\n")
    (root / "exported" / "00003").mkdir(parents=True)  # an earlier export's manifest, and a photo added later
    (root / "exported" / "00003" / "00000.png").write_bytes(b"an earlier export")
    earlier = {"file": "00003/00000.png", "bytes": 17, "sha256": hashlib.sha256(b"an earlier export").hexdigest()}
    (root / "exported" / "manifest.json").write_text(json.dumps({"count": 1, "files": [earlier]}) + "\n")
    (root / "exported" / "00003" / "vacation.jpg").write_bytes(b"a photo")
    (root / "deep.yaml").write_text("train: " + "[" * 3000 + "]" * 3000 + "\n")
    (root / "deepplan.yaml").write_text("base: tiny.yaml\nmethods: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    shutil.copytree(root / "run", root / "bomb")
    (root / "bomb" / "samples" / "step-0000009.png").write_bytes(png_header(100_000, 100_000))


def plant_links_and_foreign_folders(root: Path) -> None:
    """Links out of run folders (group 1) and folders sngan did not make or that belong to another run (group 2)."""
    (root / "victim.txt").write_text("someone else's file\n")
    for name, part in (("linklock", ".lock"), ("linkmetrics", "metrics.jsonl"), ("linkconfig", "config.yaml"),
                       ("linksamples", "samples"), ("linkmarker", ".sngan-run"), ("linklog", "log.txt")):
        shutil.copytree(root / "run", root / name)
        target = root / name / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(root / ("empty" if part == "samples" else "victim.txt"))
    (root / "dangling").mkdir()
    (root / "dangling" / "metrics.jsonl").symlink_to(root / "nowhere" / "log.jsonl")
    (root / "danglingcfg").mkdir()
    (root / "danglingcfg" / "config.yaml").symlink_to(root / "nowhere" / "config.yaml")
    (root / "link.png").symlink_to(root / "victim.txt")
    foreign = root / "foreign"
    (foreign / "samples").mkdir(parents=True)
    (foreign / "config.yaml").write_text("my own notes\n")
    (foreign / "samples" / "holiday.png").write_bytes(b"a photo")
    (foreign / ".x.12345678.tmp").write_text("not sngan's\n")
    (root / "dl").mkdir()
    shutil.copy(root / CKPT, root / "dl" / "model.pt")
    shutil.copytree(root / "run", root / "other")
    (root / "other" / ".sngan-run").write_text("0" * 32 + "\n")
    assert len((root / "run" / ".sngan-run").read_text().strip()) == 32


def hold_lock(root: Path) -> Callable[[], None]:
    """Another process's lock on run/.lock (flock is per open file, so this process's second open conflicts)."""
    fd = os.open(root / "run" / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"otherhost:4242\n", 0)

    def release() -> None:
        os.ftruncate(fd, 0)
        os.close(fd)

    return release


def fail_fsync(code: int) -> Callable[[pytest.MonkeyPatch], None]:
    def setup(monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(fd: int) -> None:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "fsync", refuse)
    return setup


def cpu_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 68719476736 bytes.")

    monkeypatch.setattr("sngan.sample.generate.load_generator", allocate)
    monkeypatch.setattr("sngan.train.launch.train", allocate)


def cuda_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    def allocate(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB (GPU 0; 80 GiB total)")

    monkeypatch.setattr("sngan.sample.generate.load_generator", allocate)


def second_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("second signal SIGTERM: stopping without a checkpoint")

    monkeypatch.setattr("sngan.train.launch.train", interrupted)


TRAIN = ["train", "--config", "tiny.yaml", "--no-progress"]
FRESH = [*TRAIN, "--out", "fresh"]
RESUME = [*TRAIN, "--out", "run", "--resume"]
SAMPLE = ["sample", "--ckpt", CKPT, "--no-progress", "--out"]
CASES: dict[str, tuple] = {  # name: (command line, exit code, fragment of the one line[, setup])
    # config files
    "malformed yaml": (["train", "--config", "malformed.yaml", "--out", "fresh"], 1, "malformed YAML"),
    "empty config": (["train", "--config", "empty.yaml", "--out", "fresh"], 1, "config file is empty"),
    "empty mapping config": (["train", "--config", "emptymap.yaml", "--out", "fresh"], 1, "config file is empty"),
    "list config": (["train", "--config", "list.yaml", "--out", "fresh"], 1, "must be a mapping of sections"),
    "duplicate key": (["train", "--config", "dupkey.yaml", "--out", "fresh"], 1,
                      "key 'iterations' is given twice (lines 2 and 3)"),
    "duplicate section": (["train", "--config", "dupsection.yaml", "--out", "fresh"], 1,
                          "key 'train' is given twice (lines 1 and 5)"),
    "yaml alias": (["train", "--config", "alias.yaml", "--out", "fresh"], 1, "aliases"),
    "section not a mapping": (["train", "--config", "scalar_section.yaml", "--out", "fresh"], 1,
                              "section 'train' must be a mapping"),
    "config too large": (["train", "--config", "huge.yaml", "--out", "fresh"], 1, "too large for a config file"),
    "missing config": (["train", "--config", "nothing.yaml", "--out", "fresh"], 1, "config file not found"),
    # config values
    "unknown key": ([*FRESH, "--set", "train.iteratons=5"], 1, "did you mean 'iterations'"),
    "unknown section": ([*FRESH, "--set", "trian.iterations=5"], 1, "unknown section 'trian'"),
    "override without =": ([*FRESH, "--set", "train.iterations"], 1, "must look like section.key=value"),
    "override alias": ([*FRESH, "--set", "train.iterations=*x"], 1, "aliases"),
    "wrong type": ([*FRESH, "--set", "train.batch_size=big"], 1,
                   "'train.batch_size' must be an integer, got a string 'big'"),
    "negative lr": ([*FRESH, "--set", "optim.lr=-1"], 1, "'optim.lr' must be > 0"),
    "infinite lr": ([*FRESH, "--set", "optim.lr=.inf"], 1, "'optim.lr' must be a finite number"),
    "nan lr": ([*FRESH, "--set", "optim.lr=.nan"], 1, "'optim.lr' must be a finite number"),
    "infinite ema decay": ([*FRESH, "--set", "train.ema_decay=-.inf"], 1, "'train.ema_decay' must be a finite"),
    "beta above 1": ([*FRESH, "--set", "optim.beta2=1.5"], 1, "'optim.beta2' must be < 1"),
    # Adam refuses a beta of exactly 1 (ValueError: Invalid beta parameter): refused by the schema first
    "empty resume": ([*TRAIN, "--out", "run", "--resume", ""], 1, "--resume needs a checkpoint file or 'auto', got "
                                                                  "an empty value"),
    "blank resume without config": (["train", "--resume", " "], 1, "--resume needs a checkpoint file or 'auto'"),
    "beta2 of 1": ([*FRESH, "--set", "optim.beta2=1.0"], 1, "'optim.beta2' must be < 1, got 1.0"),
    "beta1 of 1": ([*FRESH, "--set", "optim.beta1=1"], 1, "'optim.beta1' must be < 1, got 1"),
    "bad choice": ([*FRESH, "--set", "loss.type=wgan"], 1, "must be one of hinge|nonsaturating"),
    "decay after the end": ([*FRESH, "--set", "optim.lr_decay_start=3"], 1, "must be < train.iterations"),
    "negative seed": ([*FRESH, "--set", "train.seed=-1"], 1, "'train.seed' must be >= 0"),
    "huge z_dim": ([*FRESH, "--set", "model.z_dim=1000000000"], 1, "'model.z_dim' must be <= 4096"),
    "huge z_dim dry run": ([*FRESH, "--dry-run", "--set", "model.z_dim=1000000000"], 1, "must be <= 4096"),
    "huge width dry run": ([*FRESH, "--dry-run", "--set", "model.resolution=128", "--set", "model.g_ch=4096"], 1,
                           "more than the limit of 1,000,000,000"),
    "huge width train": ([*FRESH, "--set", "model.d_ch=4096", "--set", "model.resolution=128"], 1,
                         "discriminator of"),
    "huge batch": ([*FRESH, "--set", "train.batch_size=1000000"], 1, "'train.batch_size' must be <= 65536"),
    "huge g batch": ([*FRESH, "--set", "train.g_batch_size=1000000"], 1, "'train.g_batch_size' must be <="),
    "huge iterations": ([*FRESH, "--set", "train.iterations=1000000000000"], 1, "'train.iterations' must be <="),
    "huge grid": ([*FRESH, "--set", "train.num_samples=100000"], 1, "'train.num_samples' must be <= 4096"),
    "huge eval samples": ([*FRESH, "--set", "train.eval_num_samples=1000000000"], 1, "'train.eval_num_samples'"),
    "huge ema bn samples": ([*FRESH, "--set", "train.ema_bn_samples=1000000000"], 1, "'train.ema_bn_samples' must be"),
    "huge classes": ([*FRESH, "--set", "model.num_classes=1000000000"], 1, "'model.num_classes' must be <="),
    "huge synthetic set": ([*FRESH, "--set", "data.num_images=1000000000000"], 1, "'data.num_images' must be <="),
    # data
    "missing data root": ([*FRESH, "--set", "data.name=folder", "--set", "data.root=nowhere"], 1,
                          "is not a folder"),
    "empty data folder": ([*FRESH, "--set", "data.name=folder", "--set", "data.root=empty"], 1, "class folder"),
    # run folders
    "new run over old": ([*TRAIN, "--out", "run"], 1, "already holds checkpoints"),
    "out is a file": ([*TRAIN, "--out", "afile"], 1, "'afile' is a file; a run needs a folder"),
    "out under a file": ([*TRAIN, "--out", "afile/run"], 1, "'afile' is a file, not a folder"),
    "run folder locked": ([*RESUME, "auto", "--set", "train.iterations=5"], 1, "in use by another sngan process "
                          "(host otherhost, PID 4242)", "lock"),
    "resume auto without checkpoints or config": (["train", "--out", "nockpt", "--resume", "auto", "--no-progress"], 1,
                                                  "no checkpoint in 'nockpt/checkpoints' (give --config as well"),
    "nothing to train": (["train", "--out", "fresh"], 1, "--config FILE is required"),
    "disk full on resume": ([*RESUME, "auto", "--set", "train.iterations=5"], 1,
                            "metrics.jsonl: no space left on device", fail_fsync(errno.ENOSPC)),
    "read-only file system on resume": ([*RESUME, "auto", "--set", "train.iterations=5"], 1,
                                        "read-only file system", fail_fsync(errno.EROFS)),
    "second signal": ([*FRESH], 130, "interrupted: second signal SIGTERM", second_signal),
    # links out of the run folder (group 1)
    "lock is a link": ([*TRAIN, "--out", "linklock", "--resume", "auto"], 1, "linklock/.lock: it is a symbolic link"),
    "metrics is a link": ([*TRAIN, "--out", "linkmetrics", "--resume", "auto"], 1,
                          "linkmetrics/metrics.jsonl: it is a symbolic link"),
    "config is a link": ([*TRAIN, "--out", "linkconfig", "--resume", "auto"], 1,
                         "linkconfig/config.yaml: it is a symbolic link"),
    "samples is a link": ([*TRAIN, "--out", "linksamples", "--resume", "auto"], 1, "must be a real folder"),
    "marker is a link": ([*TRAIN, "--out", "linkmarker", "--resume", "auto"], 1, ".sngan-run: it is a symbolic link"),
    "log.txt is a link": ([*TRAIN, "--out", "linklog", "--resume", "auto"], 1, "log.txt: it is a symbolic link"),
    "dangling log link, new run": ([*TRAIN, "--out", "dangling"], 1, "metrics.jsonl: it is a symbolic link"),
    "dangling config link, new run": ([*TRAIN, "--out", "danglingcfg"], 1, "config.yaml: it is a symbolic link"),
    "sample --force onto a link": ([*SAMPLE, "link.png", "--force"], 1, "link.png: it is a symbolic link"),
    "sample onto a link": ([*SAMPLE, "link.png"], 1, "exists; choose another --out or add --force"),
    # folders sngan did not make, or another run's (group 2)
    "new run into a foreign folder": ([*TRAIN, "--out", "foreign"], 1, "is not empty and is not a run folder"),
    "resume into a foreign folder": ([*TRAIN, "--out", "foreign", "--resume", CKPT], 1,
                                     "'foreign' is not a run folder sngan made"),
    "resume from a download folder": ([*TRAIN, "--resume", "dl/model.pt"], 1, "'dl' is not a run folder sngan"),
    "resume into another run": ([*TRAIN, "--out", "other", "--resume", CKPT], 1,
                                "'other' is the folder of another run (run id 0000"),
    "resume auto into another run's folder": ([*TRAIN, "--out", "other", "--resume", "auto"], 1,
                                              "'other' is the folder of another run"),
    # outputs never overwrite silently (group 4)
    "stats over an existing file": (["stats", "--config", "tiny.yaml", "--out", "taken.npz"], 1,
                                    "'taken.npz' exists; choose another --out or add --force"),
    "report over a sample grid": (["report", "run", "--out", "run/samples/step-0000002.png"], 1,
                                  "step-0000002.png' exists; choose another --out or add --force"),
    "inspect json over a file": (["inspect", "--ckpt", CKPT, "--json", "taken.json"], 1, "'taken.json' exists"),
    "inspect plot as text": (["inspect", "--ckpt", CKPT, "--plot", "x.txt"], 1, "--plot must end in .png, .pdf"),
    "sample --force over a folder with other files": ([*SAMPLE, "mixed", "--force"], 1,
                                                      "which its manifest.json does not list"),
    "sample --force over a user file in a class folder": ([*SAMPLE, "exported", "--force"], 1,
                                                          "holds '00003/vacation.jpg', which its manifest.json"),
    # one line for every failure, resources included (group 5)
    "CPU out of memory": ([*SAMPLE, "x.png"], 1, "out of memory (", cpu_oom),
    "CUDA out of memory": ([*SAMPLE, "x.png"], 1, "out of memory (CUDA out of memory", cuda_oom),
    "CPU out of memory in training": ([*FRESH], 1, "out of memory", cpu_oom),
    "inspect huge model": (["inspect", "--ckpt", "huge_d.pt"], 1, "more than the limit of 1,000,000,000"),
    "inspect NaN weights": (["inspect", "--ckpt", "nan_d.pt"], 1, "holds NaN or infinite values"),
    "inspect config and weights disagree": (["inspect", "--ckpt", "d_wrong_shape.pt"], 1, "has shape (7,)"),
    "inspect without model section": (["inspect", "--ckpt", "no_model.pt"], 1, "has no 'model' section"),
    "inspect discriminator a list": (["inspect", "--ckpt", "d_list.pt"], 1, "'discriminator' must be a state dict"),
    "sample without model section": ([*SAMPLE, "x.png"][:2] + ["no_model.pt", "--out", "x.png"], 1,
                                     "has no 'model' section"),
    "smaller dataset on resume": ([*RESUME, CKPT, "--set", "data.num_images=64"], 1,
                                  "data order is for a dataset of another size"),
    "config nested 3000 deep": (["train", "--config", "deep.yaml", "--out", "fresh"], 1, "nested more than 32"),
    "override nested 3000 deep": ([*FRESH, "--set", "train.iterations=" + "[" * 3000 + "]" * 3000], 1,
                                  "nested more than 32"),
    "study plan nested 3000 deep": (["study", "--plan", "deepplan.yaml", "--out", "fresh"], 1, "nested more than"),
    "report on a decompression bomb": (["report", "bomb", "--out", "bomb.png"], 1, "cannot read the sample grid"),
    # no silent wrong results (group 6)
    "sample NaN weights": (["sample", "--ckpt", "nan_g.pt", "--out", "x.png"], 1, "holds NaN or infinite values"),
    "resume NaN weights": ([*RESUME, "nan_g.pt"], 1, "holds NaN or infinite values"),
    "eval NaN weights": (["eval", "--ckpt", "nan_g.pt"], 1, "holds NaN or infinite values"),
    "stats split of a synthetic set": (["stats", "--config", "tiny.yaml", "--out", "x.npz", "--split", "nosuch"], 1,
                                       "data.split must be train for synthetic"),
    # an older checkpoint on a full disk: nothing moved, no "moved" line (group 3)
    "disk full resuming an older checkpoint": ([*RESUME, "run/checkpoints/ckpt-0000002.pt"], 1,
                                               "no space left on device", fail_fsync(errno.ENOSPC)),
    # resuming from a checkpoint
    "truncated resume": ([*RESUME, "truncated.pt"], 1, "truncated or corrupt"),
    "malicious resume": ([*RESUME, "evil.pt"], 1, "pickled Python objects"),
    "not a checkpoint resume": ([*RESUME, "notes.pt"], 1, "not a PyTorch checkpoint"),
    "missing checkpoint resume": ([*RESUME, "nothing.pt"], 1, "checkpoint not found"),
    "other model": ([*RESUME, CKPT, "--set", "model.d_ch=16"], 1, "changes the model (d_ch)"),
    "wrong tensor shape": ([*RESUME, "wrong_shape.pt"], 1, "'generator.l1.weight' has shape (3, 3)"),
    "missing tensor": ([*RESUME, "missing_key.pt"], 1, "'generator' lacks 'l1.weight'"),
    "extra tensor": ([*RESUME, "extra_key.pt"], 1, "'generator' has 'stowaway'"),
    "discriminator shape": ([*RESUME, "d_wrong_shape.pt"], 1,
                            "'discriminator.linear.parametrizations.weight.0._u' has shape (7,)"),
    "no optimizer": ([*RESUME, "no_opt_g.pt"], 1, "no 'opt_g' section"),
    "no rng": ([*RESUME, "no_rng.pt"], 1, "no 'rng' section"),
    "rng without data order": ([*RESUME, "rng_no_data.pt"], 1, "'rng' section lacks 'data'"),
    "optimizer groups": ([*RESUME, "opt_groups.pt"], 1, "'opt_d' has 0 parameter groups"),
    "optimizer moment shape": ([*RESUME, "opt_moment_shape.pt"], 1, "'opt_g' state 0.exp_avg has shape (2, 2)"),
    "config not a mapping": ([*RESUME, "config_string.pt"], 1, "'config' must be a mapping"),
    "config section a list": ([*RESUME, "config_section_list.pt"], 1, "'config' must be a mapping"),
    "config not a mapping, no --config": (["train", "--out", "run", "--resume", "config_string.pt"], 1,
                                          "'config' must be a mapping"),
    "negative step": ([*RESUME, "negative_step.pt"], 1, "'step' must be an integer in [0, "),
    "newer format": ([*RESUME, "newer_format.pt"], 1,
                     "checkpoint format 99; this sngan reads checkpoint format 1 only (upgrade sngan)"),
    "generator not a dict": ([*RESUME, "generator_list.pt"], 1, "'generator' must be a state dict"),
    # inspect and eval open checkpoints through the same opener (sngan.checkpoint.open_checkpoint)
    "truncated inspect": (["inspect", "--ckpt", "truncated.pt"], 1, "truncated or corrupt"),
    "not a checkpoint inspect": (["inspect", "--ckpt", "notes.pt"], 1, "not a PyTorch checkpoint"),
    "malicious inspect": (["inspect", "--ckpt", "evil.pt"], 1, "pickled Python objects"),
    "inspect extra tensor": (["inspect", "--ckpt", "d_extra_key.pt"], 1, "'discriminator' has 'stowaway'"),
    "truncated eval": (["eval", "--ckpt", "truncated.pt"], 1, "truncated or corrupt"),
    "not a checkpoint eval": (["eval", "--ckpt", "notes.pt"], 1, "not a PyTorch checkpoint"),
    "malicious eval": (["eval", "--ckpt", "evil.pt"], 1, "pickled Python objects"),
    "eval wrong shape": (["eval", "--ckpt", "wrong_shape.pt"], 1, "'generator.l1.weight' has shape (3, 3)"),
    "eval --ema without an EMA generator": (["eval", "--ckpt", CKPT, "--ema"], 1, "has no EMA generator"),
    "sample --ema without an EMA generator": (["sample", "--ckpt", CKPT, "--ema", "--out", "x.png"], 1,
                                              "has no EMA generator"),
    # sampling
    "truncated sample": (["sample", "--ckpt", "truncated.pt", "--out", "x.png"], 1, "truncated or corrupt"),
    "not a checkpoint sample": (["sample", "--ckpt", "notes.pt", "--out", "x.png"], 1, "not a PyTorch checkpoint"),
    "malicious sample": (["sample", "--ckpt", "evil.pt", "--out", "x.png"], 1, "pickled Python objects"),
    "missing checkpoint sample": (["sample", "--ckpt", "nothing.pt", "--out", "x.png"], 1, "checkpoint not found"),
    "sample wrong shape": (["sample", "--ckpt", "wrong_shape.pt", "--out", "x.png"], 1, "has shape (3, 3)"),
    "sample config not a mapping": (["sample", "--ckpt", "config_string.pt", "--out", "x.png"], 1,
                                    "'config' must be a mapping"),
    "bad device": ([*SAMPLE, "x.png", "--device", "gpu"], 1, "device must be auto, cpu, cuda or cuda:N"),
    "huge num": ([*SAMPLE, "x.npz", "--num", "1000000000"], 1, "--num must be between 1 and 50,000"),
    "huge batch size": ([*SAMPLE, "x.png", "--batch-size", "100000"], 1, "--batch-size must be between 1 and"),
    "huge nrow": ([*SAMPLE, "x.png", "--nrow", "100000"], 1, "--nrow must be between 1 and 1,024"),
    "huge interpolation": ([*SAMPLE, "x.png", "--interpolate", "100000"], 1, "--interpolate must be between 2"),
    "huge seed": ([*SAMPLE, "x.png", "--seed", str(2 ** 70)], 1, "--seed must be between 0 and"),
    "grid too large": ([*SAMPLE, "x.png", "--num", "5000"], 1, "the grid would hold 5,000 images"),
    "strip too large": ([*SAMPLE, "x.png", "--num", "100", "--interpolate", "200"], 1,
                        "the interpolation strip would hold 20,000 images"),
    "per-class export too large": (["sample", "--ckpt", COND, "--out", "x.npz", "--classes", "all", "--num",
                                    "20000"], 1, "the export would hold 60,000 images"),
    "sample out under a file": ([*SAMPLE, "afile/x.png"], 1, "'afile' is a file, not a folder"),
    "sample out is a folder": ([*SAMPLE, "empty", "--format", "grid"], 1, "is a folder; give a file name"),
    "folder export into a file": ([*SAMPLE, "afile", "--format", "folder"], 1, "is a file; a folder export"),
    "sample over existing output": ([*SAMPLE, "taken.png"], 1, "exists; choose another --out or add --force"),
    "class on unconditional": ([*SAMPLE, "x.png", "--class", "1"], 1, "this model is unconditional"),
    "disk full while sampling": ([*SAMPLE, "x.png"], 1, "cannot write x.png: no space left on device",
                                 fail_fsync(errno.ENOSPC)),
    "quota while sampling": ([*SAMPLE, "x.npz"], 1, "cannot write x.npz: disk quota exceeded",
                             fail_fsync(errno.EDQUOT)),
    # usage errors: one line too, exit 2
    "unknown option": ([*TRAIN, "--bogus"], 2, "No such option: --bogus"),
    "missing required option": (["sample", "--out", "x.png"], 2, "Missing option '--ckpt'"),
    "value below minimum": ([*SAMPLE, "x.png", "--num", "0"], 2, "Invalid value for '--num'"),
    "not a number": ([*SAMPLE, "x.png", "--num", "many"], 2, "Invalid value for '--num'"),
    "unknown command": (["fly"], 2, "No such command 'fly'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(workspace, monkeypatch, case):
    args, code, expected, *setup = CASES[case]
    monkeypatch.chdir(workspace)
    release = None
    if setup and setup[0] == "lock":
        release = hold_lock(workspace)
    before = snapshot(workspace)
    if setup and callable(setup[0]):
        setup[0](monkeypatch)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        monkeypatch.undo()
        monkeypatch.chdir(workspace)
        if release is not None:
            release()
    assert result.exit_code == code, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], (case, result.stderr)
    assert lines[0].startswith("error: ") or code == 130, lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    after = snapshot(workspace)
    if release is not None:  # the other holder's PID was in the lock file only while it held it
        before[workspace / "run" / ".lock"] = b""
    assert after == before, case
    assert not (workspace / "PWNED").exists() and not (workspace / "fresh").exists()
    assert not [p for p in [*workspace.rglob("*.tmp"), *workspace.rglob("*.stage")] if p.parent.name != "foreign"], case


# Inputs that must work, and failures in the middle of work: nothing is lost.

def copy_run(tiny_runs, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(tiny_runs["uncond"], tmp_path / name))


def steps(run: Path, name: str = "metrics.jsonl") -> list[int]:
    import json

    return [json.loads(line)["step"] for line in (run / name).read_text().splitlines()]


def test_torn_last_metrics_line_is_dropped_with_a_notice_and_resume_auto_works(tiny_runs, tmp_path):
    run = copy_run(tiny_runs, tmp_path)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "d_lo')
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress", "--set",
                                      "train.iterations=4"])
    assert result.exit_code == 0, result.output
    assert "dropped an incomplete last line" in result.output
    assert steps(run) == [1, 2, 3, 4]


def test_resuming_an_older_checkpoint_into_another_run_moves_later_records_aside(tiny_runs, tmp_path):
    a, b = copy_run(tiny_runs, tmp_path, "a"), copy_run(tiny_runs, tmp_path, "b")
    original = (b / "metrics.jsonl").read_text()
    older = a / "checkpoints" / "ckpt-0000002.pt"
    result = CliRunner().invoke(app, ["train", "--out", str(b), "--resume", str(older), "--no-progress", "--set",
                                      "train.iterations=3"])
    assert result.exit_code == 0, result.output
    (aside,) = b.glob("metrics.superseded-*.jsonl")
    assert steps(b, aside.name) == [3]
    assert steps(b) == [1, 2, 3]
    kept = [line for line in original.splitlines() if '"step": 3' not in line]
    assert (b / "metrics.jsonl").read_text().splitlines()[:2] == kept
    (ckpt_aside,) = [p for p in (b / "checkpoints").iterdir() if p.is_dir()]
    assert [p.name for p in ckpt_aside.iterdir()] == ["ckpt-0000003.pt"]


def test_partial_files_of_a_killed_save_are_removed_on_the_next_start(tiny_runs, tmp_path):
    run = copy_run(tiny_runs, tmp_path)
    stale = [run / "checkpoints" / ".ckpt-0000004.pt.a1b2c3d4.tmp", run / ".config.yaml.zz99yy88.tmp",
             run / "samples" / ".step-0000004.png.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    mine = run / "checkpoints" / "notes.tmp"  # not an atomic_write temporary: left alone
    mine.write_text("mine")
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and mine.read_text() == "mine"
    assert "a partial file left by a process that was stopped mid-write" in result.output


def test_a_failing_grid_write_leaves_the_old_grid_byte_identical(tmp_path, monkeypatch):
    import sngan.sample.writers as writers
    from sngan.errors import SnganError

    path = writers.save_grid(torch.zeros(4, 3, 8, 8), tmp_path / "grid.png")
    before = path.read_bytes()

    class FullDisk:  # the grid's PNG encoder, on a disk that fills up half-way through the file
        def save(self, fh, **kwargs):
            fh.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers, "_to_pil", lambda grid, scale=1: FullDisk())
    with pytest.raises(SnganError, match="cannot write .*grid.png: no space left on device"):
        writers.save_grid(torch.ones(4, 3, 8, 8), path)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]


def test_disk_full_while_logging_is_one_line_and_leaves_no_partial_file(tiny_runs, tmp_path, monkeypatch):
    import sngan.io

    run = copy_run(tiny_runs, tmp_path)
    before = (run / "metrics.jsonl").read_bytes()

    def full_disk(path, mode="r", *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sngan.io, "open", full_disk, raising=False)
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "auto", "--no-progress", "--set",
                                      "train.iterations=4"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()  # the run's first append (log.txt, then metrics.jsonl) fails
    assert lines in ([f"error: cannot write {run / name}: no space left on device"] for name in ("log.txt",
                                                                                               "metrics.jsonl"))
    assert (run / "metrics.jsonl").read_bytes() == before and not list(run.rglob("*.tmp"))
    assert (run / "config.yaml").stat().st_size > 0 and (run / ".lock").read_bytes() == b""


def test_a_dead_holders_lock_never_blocks_and_a_live_one_is_named(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    from sngan.errors import SnganError
    from sngan.train.rundir import FolderLock

    holder = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
              "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'otherhost:{os.getpid()}\\n'.encode()); "
              "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SnganError, match=f"in use by another sngan process \\(host otherhost, PID {proc.pid}\\)"):
            FolderLock(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lock = FolderLock(tmp_path)  # the kernel released the dead process's lock
    assert (tmp_path / ".lock").read_text() == f"{socket.gethostname()}:{os.getpid()}\n"  # host and PID
    with pytest.raises(SnganError, match=f"in use by another sngan process \\(host {socket.gethostname()}, PID "
                                         f"{os.getpid()}\\)"):
        FolderLock(tmp_path)  # a second open file of the same folder, as another host's process would be
    lock.release()
    assert (tmp_path / ".lock").read_bytes() == b""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; 'out under a file' covers it")
@pytest.mark.parametrize("command", ["train", "sample"])
def test_an_unwritable_out_folder_is_one_line(tiny_runs, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    args = (["train", "--config", str(write_config(tmp_path / "tiny.yaml")), "--out", str(locked / "run")]
            if command == "train" else ["sample", "--ckpt", str(tiny_runs["uncond_ckpt"]), "--out",
                                        str(locked / "x.png")])
    try:
        result = CliRunner().invoke(app, args)
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1 and "permission denied" in result.stderr
    assert list(locked.iterdir()) == []
