"""`sngan eval --metrics`: KID, PRDC and intra-FID from the FID's own features, real features in the cache."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import DataConfig
from sngan.errors import MetricError
from sngan.evaluation.protocols import make_protocol
from sngan.evaluation.reference import reference_stats
from sngan.evaluation.scoring import score_generator
from sngan.metrics import frechet_distance
from sngan.metrics.extra import extra_scores, intra_fid, parse_metrics
from sngan.metrics.kid import kernel_inception_distance
from sngan.metrics.prdc import prdc
from sngan.metrics.stats import ReferenceStats, load_stats, save_stats
from sngan.sample.generate import generate, latents, load_generator
from sngan.sample.writers import to_uint8
from tests.test_evaluation import FakeNet, tiny_run  # noqa: F401 (the fixture)


def test_kid_and_prdc_come_from_the_fid_features_without_a_second_pass(tiny_run):  # noqa: F811
    generator, _ = load_generator(tiny_run[1])
    rng = np.random.default_rng(0)
    real = rng.standard_normal((20, 9)).astype(np.float32)
    record = {"num_real": 20, "split": "train", "network": "fake-net", "inception_input": "tf1"}
    ref = ReferenceStats(real.mean(0), np.cov(real, rowvar=False), record, None, real, None)
    net = FakeNet()
    metrics = score_generator(generator, net, make_protocol("standard", 12, 3), ref, seed=1, batch_size=4,
                              extra=("kid", "prdc"))
    assert net.calls == 3  # 12 images in batches of 4, once
    z, y = latents(12, generator.z_dim, generator.num_classes, 1)
    fake = net(to_uint8(generate(generator, z, y)).permute(0, 3, 1, 2).float() / 255)[0].numpy()
    kid, kid_std = kernel_inception_distance(fake, real)
    assert (metrics["kid12_train20"], metrics["kid12_train20_std"]) == pytest.approx((kid, kid_std), rel=1e-5)
    expected = prdc(fake, real)
    assert {k: metrics[f"prdc_k5_12_train20_{k}"] for k in expected} == pytest.approx(expected, abs=1e-6)
    assert "fid12_train20" in metrics


def test_reference_cache_gains_features_and_labels_when_a_metric_asks(tmp_path):
    data = DataConfig(name="synthetic", num_images=9, root=str(tmp_path / "data"))
    net = FakeNet()
    plain = reference_stats(data, 32, 0, "train", None, net, 4, log=lambda s: None)
    assert load_stats(plain.path, features=True).features is None
    rich = reference_stats(data, 32, 0, "train", None, net, 4, log=lambda s: None, features=True)
    assert net.calls == 6 and rich.features.shape == (9, 9) and rich.labels.shape == (9,)  # rebuilt once
    again = load_stats(plain.path, features=True)
    np.testing.assert_allclose(again.features.mean(0), again.mu, rtol=1e-5)
    np.testing.assert_array_equal(again.labels, rich.labels)
    assert reference_stats(data, 32, 0, "train", None, net, 4, features=True).features is not None
    assert net.calls == 6  # read back


def test_intra_fid_is_the_mean_of_per_class_frechet_distances():
    rng = np.random.default_rng(2)
    fake, real = rng.standard_normal((30, 3)), rng.standard_normal((40, 3)) + 0.5
    fl, rl = np.arange(30) % 2, np.arange(40) % 2
    per_class = [frechet_distance(fake[fl == c].mean(0), np.cov(fake[fl == c], rowvar=False),
                                  real[rl == c].mean(0), np.cov(real[rl == c], rowvar=False)) for c in (0, 1)]
    assert intra_fid(fake, fl, real, rl, 2) == pytest.approx(sum(per_class) / 2, rel=1e-6)
    with pytest.raises(MetricError, match="class 2 has 0 generated"):
        intra_fid(fake, fl, real, rl, 3)
    ref = ReferenceStats(real.mean(0), np.eye(3), {}, None, real.astype(np.float32), rl)
    out = extra_scores(("intra_fid",), "fid30_train40", [torch.from_numpy(fake)], torch.from_numpy(fl), ref, 2)
    assert out == {"intra_fid30_train40": pytest.approx(sum(per_class) / 2, rel=1e-5)}
    with pytest.raises(MetricError, match="conditional"):
        extra_scores(("intra_fid",), "fid30_train40", [torch.from_numpy(fake)], None, ref, 0)


def test_metrics_option_refuses_unknown_names_and_statistics_without_features(tiny_run, tmp_path):  # noqa: F811
    assert parse_metrics("is,fid,prdc,kid") == ("kid", "prdc")
    with pytest.raises(MetricError, match="unknown lpips"):
        parse_metrics("fid,lpips")
    stats = save_stats(tmp_path / "plain.npz", np.zeros(9), np.eye(9),
                       {"network": "fake-net", "inception_input": "tf1"})
    result = CliRunner().invoke(app, ["eval", "--ckpt", str(tiny_run[1]), "--metrics", "fid,lpips"])
    assert result.exit_code == 1 and "unknown lpips" in result.output
    ref = load_stats(stats, features=True)
    with pytest.raises(MetricError, match="hold only mu and sigma"):
        extra_scores(("kid",), "fid5k_train10k", [torch.zeros(3, 9)], None, ref, 0)


def test_truncated_latents_are_stamped_into_the_metric_names(tiny_run):  # noqa: F811
    import dataclasses

    from sngan.evaluation.protocols import metric_names

    generator, _ = load_generator(tiny_run[1])
    real = {"num_real": 20, "split": "train", "network": "fake-net", "inception_input": "tf1"}
    plain = make_protocol("standard", 12, 3)
    cut = dataclasses.replace(plain, truncation=0.5)
    assert metric_names(cut, real) == ("is12_3splits_trunc0.5", "fid12_train20_trunc0.5")
    ref = ReferenceStats(np.zeros(9), np.eye(9), real)
    scores = [score_generator(generator, FakeNet(), p, ref, seed=1, batch_size=4) for p in (plain, cut)]
    assert scores[1]["fid12_train20_trunc0.5"] != scores[0]["fid12_train20"]  # other latents, other images


def test_a_metric_registered_in_a_test_is_computed_recorded_and_printed_by_sngan_eval(tiny_run, stand_in_inception,  # noqa: F811
                                                                                     tmp_path, monkeypatch):
    """A new metric is one function: registered here, it is a value of --metrics, gets the FID's features and
    counts, and lands in the printed block and the --json record, with no other code touched."""
    import json

    import sngan.metrics.extra as extra

    seen = []
    monkeypatch.setitem(extra.EXTRA, "mean_norm", None)  # taken out again after the test (it was absent)

    @extra.register("mean_norm")  # the way a metric is added in the package: one decorated function
    def mean_norm(f):  # the mean feature norm of the generated images over the real ones
        seen.append((f.fake.shape, f.real.shape, f.counts))
        return {f"mean_norm{f.counts}": float(np.linalg.norm(f.fake, axis=1).mean()
                                              / np.linalg.norm(f.real, axis=1).mean())}

    weights, _ = stand_in_inception
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(app, ["eval", "--ckpt", str(tiny_run[1]), "--metrics", "fid,mean_norm",
                                      "--num-samples", "4", "--splits", "2", "--device", "cpu", "--inception-weights",
                                      str(weights), "--json", str(out), "--set", f"data.root={tmp_path / 'd'}",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert seen == [((4, 2048), (6, 2048), "4_train6")]  # the FID's 4 generated against the split's 6 real
    value = json.loads(out.read_text())["metrics"]["mean_norm4_train6"]
    assert f"mean_norm4_train6 {value:.4f}" in result.output.splitlines()


@pytest.mark.parametrize("name", ["kid_rbf", "ki", "fid_clean", "is_mean"])
def test_a_metric_whose_name_starts_like_another_is_refused(name):
    import sngan.metrics.extra as extra

    with pytest.raises(ValueError, match=f"metric name '{name}' and '.*' start alike"):
        extra.register(name)
    assert name not in extra.EXTRA


def test_nan_generated_features_give_no_kid():
    ref = ReferenceStats(np.zeros(4), np.eye(4), None, features=np.ones((10, 4)))
    with pytest.raises(MetricError, match="hold NaN or inf"):
        extra_scores(("kid",), "fid10_train10", [torch.full((10, 4), float("nan"))], None, ref, 0)


def _fd_by_hand(a, b):
    """Frechet distance of two samples by scipy's matrix square root (not the product's factorisation)."""
    from scipy import linalg

    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real))


def test_intra_fid_aligns_labels_with_the_fid_features_in_batch_order_and_averages_three_classes():
    # the FID scores the first 30 of 40 generated images, in two batches: their labels are the first 30 of the
    # 40 drawn, in order; classes lie 0, 1 and 3 apart, so their FIDs (about 0, 3 and 27) have a mean unlike
    # their median
    rng = np.random.default_rng(5)
    labels = rng.permutation(np.arange(40) % 3)
    fake = rng.standard_normal((30, 3)) + np.array([0.0, 1.0, 3.0])[labels[:30], None]
    rl = np.arange(60) % 3
    real = rng.standard_normal((60, 3))
    per_class = [_fd_by_hand(fake[labels[:30] == c], real[rl == c]) for c in range(3)]
    assert abs(np.mean(per_class) - np.median(per_class)) > 1.0
    ref = ReferenceStats(real.mean(0), np.eye(3), {}, None, real.astype(np.float32), rl)
    batches = [torch.from_numpy(fake[:20]), torch.from_numpy(fake[20:])]
    out = extra_scores(("intra_fid",), "fid30_train60", batches, torch.from_numpy(labels), ref, 3)
    assert out == {"intra_fid30_train60": pytest.approx(np.mean(per_class), rel=1e-4)}
    one = np.array([0] * 5 + [1] * 5 + [2])  # class 2: one generated image, no covariance
    with pytest.raises(MetricError, match="class 2 has 1 generated"):
        intra_fid(fake[:11], one, real, rl, 3)
