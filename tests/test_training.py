"""The training loop: what is due after each iteration, what a run writes, determinism, conditional runs, the step's
first log line, and every paper config for a few tiny iterations."""

import json

import pytest
import torch

from sngan.checkpoint import load_checkpoint
from sngan.config import TrainConfig, load_config
from sngan.errors import SnganError
from sngan.records import read_records
from sngan.train.loop import due, train
from sngan.train.perf import Perf, path_line
from tests.helpers import CONFIGS

# (step, stopping, evaluating) -> (log, sample, save, evaluate, inspect, stop), worked out by hand for a run of 10
# iterations logging every 3, sampling every 4, saving every 5, scoring every 6 and inspecting every 2
SCHEDULE = [
    ((1, False, True), (False, False, False, False, False, False)),
    ((3, False, True), (True, False, False, False, False, False)),
    ((4, False, True), (False, True, False, False, True, False)),
    ((5, False, True), (False, False, True, False, False, False)),
    ((6, False, True), (True, False, False, True, True, False)),
    ((6, False, False), (True, False, False, False, True, False)),  # no evaluator: never scored
    ((10, False, True), (True, True, True, True, True, False)),  # the last iteration: everything
    ((7, True, True), (True, True, True, False, False, True)),  # a stop: log, grid, checkpoint; no scoring, no inspect
    ((8, True, True), (True, True, True, False, False, True)),  # even at a step where they were due
]


@pytest.mark.parametrize("when, expected", SCHEDULE, ids=[f"step{w[0]}-stop{int(w[1])}-eval{int(w[2])}"
                                                          for w, _ in SCHEDULE])
def test_what_is_due_after_each_iteration(when, expected):
    t = TrainConfig(iterations=10, log_every=3, sample_every=4, ckpt_every=5, eval_every=6, inspect_every=2)
    now = due(*when[:1], t, *when[1:])
    assert (now.log, now.sample, now.save, now.evaluate, now.inspect, now.stop) == expected


def test_a_schedule_of_zero_turns_grids_and_periodic_checkpoints_off_but_the_last_step_still_saves():
    t = TrainConfig(iterations=10, log_every=3, sample_every=0, ckpt_every=0, eval_every=6, inspect_every=0)
    assert [(s, due(s, t, False, False).save, due(s, t, False, False).sample) for s in (5, 9, 10)] == [
        (5, False, False), (9, False, False), (10, True, True)]


def test_three_iterations_write_checkpoint_grid_config_and_log(tiny_config, tmp_path):
    run, lines = tmp_path / "run", []
    last = train(load_config(tiny_config), run, progress=False, log=lines.append)
    assert lines[0].startswith("training step: eager (perf.compile auto: eager on cpu, compiling pays on CUDA only), "
                               "precision fp32, on cpu;")
    assert "--set perf.compile=default" in lines[0] and "reduce-overhead" not in lines[0]  # CUDA graphs: CUDA only
    assert last == run / "checkpoints" / "ckpt-0000003.pt"
    state = torch.load(last, weights_only=True)
    assert state["step"] == 3 and state["config"]["train"]["iterations"] == 3
    assert {"generator", "discriminator", "opt_g", "opt_d", "rng"} <= set(state)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000003.png"]
    assert (run / "config.yaml").read_text().startswith("data:")
    records = read_records(run)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["lr"] > 0 and r["d_loss"] > 0 for r in records)
    # every line is a JSON object (read_records drops a torn last line, so it alone would not show a bad one)
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_training_changes_weights_and_is_deterministic(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    a = load_checkpoint(train(cfg, tmp_path / "a", progress=False, log=lambda s: None))
    b = load_checkpoint(train(cfg, tmp_path / "b", progress=False, log=lambda s: None))
    for key in ("generator", "discriminator"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), name
    from sngan.models import build_generator

    torch.manual_seed(cfg.train.seed)
    fresh = build_generator(cfg.model).state_dict()
    assert not torch.equal(fresh["l1.weight"], a["generator"]["l1.weight"])


def test_conditional_training_on_labelled_data(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["model.num_classes=3", "train.iterations=1"])
    state = load_checkpoint(train(cfg, tmp_path / "run", progress=False, log=lambda s: None))
    assert state["generator"]["blocks.0.b1.gamma.weight"].shape == (3, 8)
    with pytest.raises(SnganError, match="dataset has 3 classes"):
        train(load_config(tiny_config, ["model.num_classes=5"]), tmp_path / "r2", progress=False,
              log=lambda s: None)


def test_the_path_line_names_a_compiled_step_and_how_to_turn_it_off():
    line = path_line(Perf(precision="bf16", compile="reduce-overhead"), torch.device("cuda", 0))
    assert line == ("training step: compiled (perf.compile reduce-overhead), precision bf16, on cuda:0; eager with "
                    "--set perf.compile=off")


def test_the_path_line_suggests_only_what_the_device_can_use():
    """issue 30 section 7: CUDA graphs (reduce-overhead) are suggested on CUDA, never on the CPU."""
    cpu, cuda = (path_line(Perf(), torch.device(d)) for d in ("cpu", "cuda"))
    assert cpu == ("training step: eager (perf.compile off), precision fp32, on cpu; compile with --set "
                   "perf.compile=default")
    assert "--set perf.compile=reduce-overhead (CUDA graphs)" in cuda and "CUDA graphs" not in cpu


@pytest.mark.parametrize("name", ["cifar10_resnet_conditional", "imagenet64_projection", "imagenet128_concat"])
def test_paper_config_trains_three_iterations_at_tiny_width(name, tmp_path):
    """The paper config as written, shrunk: tiny widths, synthetic data (3 classes), 3 iterations on CPU."""
    tiny = ["data.name=synthetic", "data.num_images=32", "model.g_ch=2", "model.d_ch=2", "model.num_classes=3",
            "train.iterations=3", "train.batch_size=4", "train.g_batch_size=4", "train.n_dis=1", "train.device=cpu",
            "train.num_samples=4", "train.ema_bn_samples=8", "optim.lr_decay_start=0", "perf.precision=fp32"]
    cfg = load_config(CONFIGS / f"{name}.yaml", tiny)
    state = load_checkpoint(train(cfg, tmp_path / "run", progress=False, log=lambda s: None))
    assert state["step"] == 3
    assert state["config"]["model"]["resolution"] == load_config(CONFIGS / f"{name}.yaml").model.resolution
