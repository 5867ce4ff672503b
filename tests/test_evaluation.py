"""`sngan stats` / `sngan eval` end to end, protocols and their names, the statistics cache (a statistics file no
features could have made is refused), eval during training."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import DataConfig, load_config, to_yaml
from sngan.data import synthetic_shapes
from sngan.errors import MetricError
from sngan.evaluation.protocols import PROTOCOLS, Protocol, make_protocol, metric_names
from sngan.evaluation.reference import reference_stats
from sngan.evaluation.scoring import score_generator
from sngan.metrics import frechet_distance, inception_score
from sngan.metrics.stats import SUBSET_RULE, SUBSET_TEXT, ReferenceStats, load_stats, reference_subset
from sngan.sample.generate import generate, latents, load_generator
from sngan.sample.writers import to_uint8
from sngan.train.loop import evaluate_and_keep_best, train
from sngan.train.rundir import RunFolder
from sngan.train.runlog import RunLog
from sngan.train.state import build_state
from tests.helpers import pytorch_fid_reference_net, write_config

runner = CliRunner()
SMALL = {"data": {"num_images": 6}, "train": {"iterations": 1, "batch_size": 4, "g_batch_size": 4}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(config path, checkpoint path) of a 1-iteration run on 6 synthetic images."""
    root = tmp_path_factory.mktemp("run")
    config = write_config(root / "tiny.yaml", {**SMALL, "data": {"num_images": 6, "root": str(root / "data")}})
    return config, train(load_config(config), root / "run", progress=False, log=lambda s: None)


class FakeNet:
    """Stands in for the Inception in cache/protocol tests: features are per-channel image statistics."""

    network, sha256, inception_input, features_key = "fake-net", "0" * 64, "tf1", "fake-net-tf1"

    def __init__(self):
        self.calls = 0
        self._buffer = torch.zeros(1)

    def buffers(self):
        return iter([self._buffer])

    def __call__(self, images):
        self.calls += 1
        features = torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3)), images.amax(dim=(2, 3))], dim=1)
        return features, features[:, :2] * 3


def pytorch_fid_features(state, images_uint8):
    """pool3 features of uint8 (N, H, W, 3) images through pytorch-fid's own InceptionV3."""
    net = pytorch_fid_reference_net(state)
    with torch.no_grad():
        return net(torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float() / 255)[0].flatten(1).double().numpy()


def test_protocol_names_encode_the_counts():
    assert metric_names(PROTOCOLS["standard"], {"split": "train", "num_real": 50000}) == ("is50k", "fid50k_train50k")
    assert metric_names(PROTOCOLS["paper"], {"split": "train", "num_real": 10000}) == ("is50k", "fid5k_train10k")
    small = make_protocol("paper", num_samples=3000, splits=5)
    assert (small.fid_generated, small.name) == (3000, "paper (modified)")
    assert metric_names(small, None) == ("is3k_5splits", "fid3k_ext")
    with pytest.raises(MetricError, match="--protocol must be one of standard|paper"):
        make_protocol("fancy")
    with pytest.raises(MetricError, match="too small"):
        make_protocol("standard", num_samples=5)


def test_reference_statistics_are_cached_per_dataset_split_count_and_network(tmp_path):
    data = DataConfig(name="synthetic", num_images=9, root=str(tmp_path / "data"))
    net = FakeNet()
    first = reference_stats(data, 32, 0, "train", 5, net, 4, log=lambda s: None)
    assert first.path.name == f"synthetic9-seed0-train-32px-n5-{SUBSET_RULE}-fake-net-tf1.npz" and net.calls == 2
    again = reference_stats(data, 32, 0, "train", 5, net, 4, log=lambda s: None)
    assert net.calls == 2 and np.array_equal(again.sigma, first.sigma)  # read back, not recomputed
    assert again.protocol["num_real"] == 5 and again.protocol["subset"] == SUBSET_TEXT
    shapes = synthetic_shapes(9, 32, seed=0)  # the rule's own images (the rule is pinned in test_reference_subset)
    images = shapes.images[reference_subset(shapes.images, shapes.labels, 5)]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    expected = net(x)[0].double().numpy()
    np.testing.assert_allclose(first.mu, expected.mean(0), rtol=1e-6)
    np.testing.assert_allclose(first.sigma, np.cov(expected, rowvar=False), rtol=1e-5, atol=1e-9)
    assert reference_stats(data, 32, 0, "train", None, net, 4, log=lambda s: None).protocol["num_real"] == 9
    with pytest.raises(MetricError, match="10 real images requested but synthetic train holds 9"):
        reference_stats(data, 32, 0, "train", 10, net, 4, log=lambda s: None)


def test_paper_protocol_scores_fid_on_the_first_images_only(tiny_run):
    generator, _ = load_generator(tiny_run[1])
    net = FakeNet()
    ref = ReferenceStats(np.zeros(9), np.eye(9), {"num_real": 10000, "split": "train", "network": "fake-net",
                                                  "inception_input": "tf1"})
    protocol = make_protocol("paper", num_samples=12, splits=3)
    assert protocol.fid_generated == 12
    protocol = dataclasses.replace(protocol, fid_generated=5)
    metrics = score_generator(generator, net, protocol, ref, seed=3, batch_size=4)
    z, y = latents(12, generator.z_dim, generator.num_classes, 3)
    x = to_uint8(generate(generator, z, y), "truncate").permute(0, 3, 1, 2).float() / 255  # paper: as gen_images
    features, logits = net(x)
    first = features[:5].double().numpy()
    expected_fid = frechet_distance(first.mean(0), np.cov(first, rowvar=False), ref.mu, ref.sigma)
    assert metrics["fid5_train10k"] == pytest.approx(expected_fid, rel=1e-9)
    probs = torch.softmax(logits.double(), dim=1).numpy()
    assert (metrics["is12_3splits"], metrics["is12_3splits_std"]) == pytest.approx(inception_score(probs, 3))


def test_stats_and_eval_end_to_end_match_pytorch_fid_features(tiny_run, inception_weights, tmp_path):
    config, ckpt = tiny_run
    weights, state = inception_weights
    out = tmp_path / "real.npz"
    result = runner.invoke(app, ["stats", "--config", str(config), "--out", str(out), "--inception-weights",
                                 str(weights), "--device", "cpu", "--batch-size", "4",
                                 "--inception-input", "pytorch-fid"])
    assert result.exit_code == 0, result.output
    real = pytorch_fid_features(state, synthetic_shapes(6, 32, seed=0).images)
    ref = load_stats(out)
    np.testing.assert_allclose(ref.mu, real.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref.sigma, np.cov(real, rowvar=False), rtol=1e-4, atol=1e-4)
    assert ref.protocol["num_real"] == 6 and ref.protocol["network"].startswith("custom-")
    with np.load(out) as raw:  # pytorch-fid / TTUR readers only need these two keys
        assert raw["mu"].shape == (2048,) and raw["sigma"].shape == (2048, 2048)

    record_file = tmp_path / "evals.jsonl"
    args = ["eval", "--ckpt", str(ckpt), "--num-samples", "4", "--splits", "2", "--stats", str(out), "--seed", "5",
            "--no-ema", "--inception-weights", str(weights), "--device", "cpu", "--json", str(record_file),
            "--inception-input", "pytorch-fid"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "IS " in result.output and "FID " in result.output
    assert "protocol: standard (pytorch-fid input) (modified)" in result.output
    assert "input pytorch-fid: pytorch-fid input: F.interpolate" in result.output
    record = json.loads(record_file.read_text().splitlines()[-1])
    assert {k: record[k] for k in ("num_generated", "fid_generated", "is_splits", "num_real", "split", "seed",
                                   "step", "generator")} == {"num_generated": 4, "fid_generated": 4, "is_splits": 2,
                                                             "num_real": 6, "split": "train", "seed": 5, "step": 1,
                                                             "generator": "raw"}
    generator, _ = load_generator(ckpt)
    fake = pytorch_fid_features(state, to_uint8(generate(generator, *latents(4, generator.z_dim, 0, 5))).numpy())
    fid = frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), ref.mu, ref.sigma)
    probs = torch.softmax(torch.from_numpy(fake) @ state["fc.weight"].double().T, dim=1).numpy()
    assert record["metrics"]["fid4_train6_pytorchfid"] == pytest.approx(fid, rel=1e-5)
    assert record["metrics"]["is4_2splits_pytorchfid"] == pytest.approx(inception_score(probs, 2)[0], rel=1e-5)
    assert record["inception_input"] == ref.protocol["inception_input"] == "pytorch-fid"


def test_offline_without_weights_eval_and_train_fail_with_one_line(tiny_run, offline_hub, tmp_path, monkeypatch):
    config, ckpt = tiny_run
    monkeypatch.chdir(tmp_path)
    env_cases = [
        ["eval", "--ckpt", str(ckpt), "--num-samples", "4", "--splits", "2", "--device", "cpu"],
        ["train", "--config", str(config), "--out", str(tmp_path / "evalrun"), "--set", "train.eval_every=1"],
    ]
    for args in env_cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pt_inception-2015-12-05" in lines[0] and "https://" in lines[0], result.stderr
    assert not (tmp_path / "evalrun").exists()  # failed before training wrote anything


def test_training_logs_stamped_metrics_and_writes_best(stand_in_inception, tmp_path):
    weights, _ = stand_in_inception
    config = write_config(tmp_path / "c.yaml", {
        "data": {"num_images": 6, "root": str(tmp_path / "data")},
        "train": {"iterations": 2, "batch_size": 4, "g_batch_size": 4, "eval_every": 2, "eval_num_samples": 10,
                  "eval_protocol": "quick", "eval_inception_weights": str(weights), "ckpt_every": 1,
                  "keep_checkpoints": 1}})
    run = tmp_path / "run"
    train(load_config(config), run, progress=False, log=lambda s: None)
    evals = [r for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()) if "is10" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2 and evals[0]["eval_network"].startswith("custom-")
    assert evals[0]["fid10_train6"] > 0 and evals[0]["is10"] >= 1 and evals[0]["eval_generator"] == "raw"
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == 2 and best["best"] == {"metric": "fid10_train6", "value": evals[0]["fid10_train6"],
                                                  "step": 2}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "ckpt-0000002.pt"]
    plain = train(load_config(config, ["train.eval_every=0"]), tmp_path / "plain", progress=False, log=lambda s: None)
    evaluated = torch.load(run / "checkpoints" / "ckpt-0000002.pt", weights_only=True)
    for key, tensor in torch.load(plain, weights_only=True)["generator"].items():
        assert torch.equal(tensor, evaluated["generator"][key]), key  # evaluation leaves training untouched


def test_training_time_scores_equal_sngan_eval_of_the_same_checkpoint_and_protocol(stand_in_inception, tmp_path):
    """The number a run logs during training is the number `sngan eval` gives for that checkpoint, protocol and
    seed (random-weight Inception, CPU): one protocol definition, one scoring path."""
    from sngan.evaluation.command import evaluate_checkpoint
    from sngan.evaluation.protocols import make_protocol
    from sngan.evaluation.scoring import EVAL_BATCH

    weights, _ = stand_in_inception
    config = write_config(tmp_path / "c.yaml", {
        "data": {"num_images": 12, "root": str(tmp_path / "data")}, "model": {"num_classes": 0},
        "train": {"iterations": 2, "batch_size": 4, "g_batch_size": 4, "eval_every": 2, "eval_num_samples": 20,
                  "eval_protocol": "quick", "eval_inception_weights": str(weights), "ckpt_every": 2,
                  "ema_decay": 0.9, "seed": 7}})
    run = tmp_path / "run"
    last = train(load_config(config), run, progress=False, log=lambda s: None)
    logged = next(r for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())
                  if "is20" in r)
    assert logged["eval_protocol"] == "quick (modified)" and logged["eval_seed"] == 7
    # training scores in batches of EVAL_BATCH; the same batches here make the same float32 sums (with only 12 real
    # images the 2048-d covariances are singular and FID's matrix square root magnifies last-bit differences)
    record = evaluate_checkpoint(last, make_protocol("quick", 20), seed=7, weights=weights, log=lambda s: None,
                                 batch_size=EVAL_BATCH)
    assert record["generator"] == "ema" == logged["eval_generator"] and record["protocol"] == logged["eval_protocol"]
    assert set(record["metrics"]) == {"is20", "is20_std", "fid20_train12"}
    for key, value in record["metrics"].items():
        assert logged[key] == value, key  # the same float32 path: the same numbers


class ScriptedEvaluator:
    """Stands in for TrainingEvaluator: returns the given FIDs in turn."""

    net = FakeNet()
    protocol = Protocol("scripted", 10, 10, 10, 6, "scripted FIDs")

    def __init__(self, fids):
        self.fids = iter(fids)

    def __call__(self, generator, info=None):
        return {"is10": 1.0, "is10_std": 0.0, "fid10_train6": next(self.fids)}


def test_best_checkpoint_follows_the_lowest_fid(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    state = build_state(cfg, torch.device("cpu"), log=lambda s: None)
    folder = RunFolder.open(tmp_path / "run", to_yaml(cfg))
    run_log, ckpt_dir = RunLog(folder), tmp_path / "run" / "checkpoints"
    evaluator, best_steps = ScriptedEvaluator([5.0, 7.0, 3.0]), []
    for step in (1, 2, 3):
        state.step = step
        evaluate_and_keep_best(state, evaluator, run_log, folder, folder.path, log=lambda s: None)
        best_steps.append(torch.load(ckpt_dir / "best.pt", weights_only=True)["step"])
    run_log.close()
    folder.close()
    assert best_steps == [1, 1, 3] and state.best == {"metric": "fid10_train6", "value": 3.0, "step": 3}
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["fid10_train6"], r["eval_network"]) for r in logged] == [
        (1, 5.0, "fake-net"), (2, 7.0, "fake-net"), (3, 3.0, "fake-net")]


def test_training_time_reference_is_the_runs_own_split(stand_in_inception, tmp_path, monkeypatch):
    """A run on CIFAR-10's test split is scored during training against statistics of that split (as `sngan eval`
    of its checkpoint would be), never the train split's."""
    from sngan.evaluation import scoring

    weights, _ = stand_in_inception
    config = write_config(tmp_path / "c.yaml", {
        "data": {"name": "cifar10", "root": str(tmp_path / "data"), "split": "test", "download": False},
        "train": {"eval_protocol": "quick", "eval_num_samples": 10, "eval_inception_weights": str(weights)}})
    asked = []

    class Asked(Exception):
        pass

    def fake_reference_stats(data_cfg, resolution, seed, split, *args, **kwargs):
        asked.append(split)
        raise Asked

    monkeypatch.setattr(scoring, "reference_stats", fake_reference_stats)
    evaluator = scoring.TrainingEvaluator(load_config(config), torch.device("cpu"), log=lambda s: None)
    with pytest.raises(Asked):
        evaluator(torch.nn.Linear(1, 1))
    assert asked == ["test"]


def test_a_resumed_run_keeps_its_best_fid_and_does_not_replace_best_pt_with_a_worse_one(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    state = build_state(cfg, torch.device("cpu"), log=lambda s: None)
    folder = RunFolder.open(tmp_path / "run", to_yaml(cfg))
    run_log, best_pt = RunLog(folder), tmp_path / "run" / "checkpoints" / "best.pt"
    state.step = 3
    evaluate_and_keep_best(state, ScriptedEvaluator([3.0]), run_log, folder, folder.path, log=lambda s: None)
    saved = torch.load(best_pt, weights_only=True)
    resumed = build_state(cfg, torch.device("cpu"), log=lambda s: None)
    resumed.restore(saved, log=lambda s: None)
    assert resumed.best == {"metric": "fid10_train6", "value": 3.0, "step": 3}
    resumed.step = 4
    evaluate_and_keep_best(resumed, ScriptedEvaluator([5.0]), run_log, folder, folder.path, log=lambda s: None)
    run_log.close()
    folder.close()
    assert torch.load(best_pt, weights_only=True)["step"] == 3  # FID 5 after the resume is worse than the kept 3


@pytest.mark.parametrize("bad", ["negative", "asymmetric", "nan"])
def test_statistics_that_no_features_can_have_are_refused(tmp_path, bad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    sigma = np.cov(x, rowvar=False)
    sigma = {"negative": -np.eye(8), "asymmetric": np.tril(sigma),
             "nan": np.where(np.eye(8) > 0, np.nan, sigma)}[bad]
    np.savez(tmp_path / "ref.npz", mu=x.mean(0), sigma=sigma)
    expected = {"negative": "not positive semi-definite", "asymmetric": "not symmetric", "nan": "NaN or inf"}[bad]
    with pytest.raises(MetricError, match=expected):
        load_stats(tmp_path / "ref.npz")


def test_a_rank_deficient_covariance_is_still_accepted(tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 16))  # 5 samples in 16 dimensions: rank 4
    np.savez(tmp_path / "ref.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))
    assert load_stats(tmp_path / "ref.npz").sigma.shape == (16, 16)


@pytest.mark.parametrize("protocol", [np.array([1, 2]), np.array(5.0), np.array('["a"]')])
def test_a_statistics_protocol_that_is_not_an_object_is_one_error(tmp_path, protocol):
    path = tmp_path / "ref.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4), protocol=protocol)
    with pytest.raises(MetricError, match="'protocol' must be a JSON object|cannot read statistics"):
        load_stats(path)
