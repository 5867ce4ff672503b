"""The shipped study plans against the paper's words (Miyato et al. 2018, section 4.1, Table 1, Figures 1-2,
App. B.1 and E), and `sngan study --dry-run`. Every expected value is typed here from the paper, not read from
the code."""

import pytest
import yaml
from typer.testing import CliRunner

from sngan.cli import app
from sngan.study.plan import load_plan
from tests.helpers import CONFIGS, assert_drawn_png, write_config

runner = CliRunner()

TABLE_1 = {  # setting: (alpha, beta1, beta2, n_dis), the paper's Table 1
    "A": (1e-4, 0.5, 0.9, 5), "B": (1e-4, 0.5, 0.999, 1), "C": (2e-4, 0.5, 0.999, 1),
    "D": (1e-3, 0.5, 0.9, 5), "E": (1e-3, 0.5, 0.999, 5), "F": (1e-3, 0.9, 0.999, 5),
}
# Figure 1 (a) CIFAR-10 and (b) STL-10: the methods each panel shows
FIGURE_1 = {"figure1_cifar10.yaml": {"WC", "GAN-GP", "WGAN-GP", "BN", "LN", "WN", "orthonormal", "SN"},
            "figure1_stl10.yaml": {"WC", "WGAN-GP", "LN", "WN", "orthonormal", "SN"}}
D_NORM = {"SN": "spectral", "BN": "batch", "LN": "layer", "WN": "weight", "WC": "none", "GAN-GP": "none",
          "WGAN-GP": "none", "orthonormal": "none"}


@pytest.mark.parametrize("name", list(FIGURE_1))
def test_figure_1_plans_run_the_papers_grid_with_its_losses_and_protocol(name):
    plan = load_plan(CONFIGS / "study" / name)
    assert {v.method for v in plan.variants} == FIGURE_1[name]
    assert {v.setting for v in plan.variants} == set(TABLE_1)
    for variant, seed in plan.runs():
        cfg = plan.config(variant, seed)
        assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.train.n_dis) == TABLE_1[variant.setting]
        assert cfg.model.arch == "cnn" and cfg.train.iterations == 100_000  # "100K for all experiments"
        assert cfg.model.d_norm == D_NORM[variant.method]
        # "For all methods other than WGAN-GP, we used the following standard objective function" (eq. 15)
        assert cfg.loss.type == ("wasserstein" if variant.method == "WGAN-GP" else "nonsaturating")
        # "set the clipping constant c at 0.01"; "For gradient penalty, we set lambda to 10"
        assert cfg.optim.d_weight_clip == (0.01 if variant.method == "WC" else 0.0)
        assert cfg.loss.gp_weight == (10.0 if variant.method.endswith("GP") else 0.0)
        assert (cfg.model.sn_algorithm, cfg.perf.precision) == ("random", "fp32")  # Algorithm 1's start; fp32
        # App. B.1: IS of 10 x 5000 generated, FID of 5000 generated against 10000 real
        assert (cfg.train.eval_protocol, cfg.train.eval_num_samples) == ("paper", 0) and cfg.train.eval_every > 0


def test_appendix_e_plan_reparametrises_sn_and_wn_with_a_learnt_gamma_under_wgan_gp():
    plan = load_plan(CONFIGS / "study" / "appendix_e_cifar10.yaml")
    runs = {v.method: plan.config(v, s) for v, s in plan.runs()}
    assert set(runs) == {"WGAN-GP", "WGAN-GP+SN", "WGAN-GP+WN"}  # Table 7's standard-CNN rows we can train
    for method, cfg in runs.items():
        assert (cfg.loss.type, cfg.loss.gp_weight, cfg.model.arch) == ("wasserstein", 10.0, "cnn")
        expected = {"WGAN-GP": ("none", False), "WGAN-GP+SN": ("spectral", True), "WGAN-GP+WN": ("weight", True)}
        assert (cfg.model.d_norm, cfg.model.d_norm_gamma) == expected[method]


def test_demo_plan_uses_the_standard_cnn():
    plan = load_plan(CONFIGS / "study" / "demo.yaml")
    assert {plan.config(v, s).model.arch for v, s in plan.runs()} == {"cnn"}


def _plan(tmp_path, **extra):
    write_config(tmp_path / "base.yaml", {"train": {"iterations": 7, "n_dis": 3}})
    raw = {"base": "base.yaml", "out": str(tmp_path / "study"), "seeds": [0, 1],
           "methods": {"SN": ["model.d_norm=spectral"], "WC": ["model.d_norm=none", "optim.d_weight_clip=0.01",
                                                              "loss.type=nonsaturating"]}, **extra}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_plans_run_in_fp32_unless_they_say_otherwise(tmp_path):
    plan = load_plan(_plan(tmp_path))
    assert {plan.config(v, s).perf.precision for v, s in plan.runs()} == {"fp32"}
    plan = load_plan(_plan(tmp_path, precision="bf16"))
    assert {plan.config(v, s).perf.precision for v, s in plan.runs()} == {"bf16"}


def test_a_plan_names_its_evaluation_protocol(tmp_path):
    plan = load_plan(_plan(tmp_path, evaluation={"every": 5, "protocol": "quick", "num_samples": 20}))
    cfg = plan.config(*plan.runs()[0])
    assert (cfg.train.eval_every, cfg.train.eval_protocol, cfg.train.eval_num_samples) == (5, "quick", 20)


def test_dry_run_prints_each_run_and_its_differences_and_writes_nothing(tmp_path):
    result = runner.invoke(app, ["study", "--plan", str(_plan(tmp_path)), "--dry-run"])
    assert result.exit_code == 0, result.output
    for name in ("SN-s0", "SN-s1", "WC-s0", "WC-s1"):
        assert f"{name}:" in result.output
    assert "optim.d_weight_clip=0.01" in result.output and "loss.type=nonsaturating" in result.output
    assert "7 G steps + 21 D steps (n_dis 3)" in result.output  # 7 iterations x n_dis 3
    assert "total: 28 G steps and 84 D steps" in result.output  # 4 runs
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("extra", [{"evaluation": {"every": 5, "protocol": "nosuch"}}, {"precision": "fp8"},
                                   {"methods": {"X": ["model.d_norm=batch", "loss.gp_weight=10"]}}])
def test_dry_run_of_a_bad_plan_is_one_line_and_exit_1(tmp_path, extra):
    result = runner.invoke(app, ["study", "--plan", str(_plan(tmp_path, **extra)), "--dry-run"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "study").exists()


def test_figure_9_curves_are_sigma_of_the_normalised_weights_from_the_log(tmp_path):
    """spectral_norms.png's data: sigma(W-bar) per layer at each check; at the last step it equals the checkpoint's
    float64 sigma(W) / (u^T W v), computed here from the saved weights and vectors."""
    import torch

    from sngan.study.figures import sn_curves
    from sngan.study.run import run_study

    plan = load_plan(_plan(tmp_path, overrides=["train.inspect_every=7", "train.ckpt_every=7",
                                                "train.sample_every=0"], seeds=[0],
                           methods={"SN": ["model.d_norm=spectral"]}))
    study = run_study(plan, progress=False, log=lambda s: None)
    assert_drawn_png(study / "spectral_norms.png")
    curves = sn_curves(study / "SN-s0")
    state = torch.load(study / "SN-s0" / "checkpoints" / "ckpt-0000007.pt", weights_only=True)["discriminator"]
    assert len(curves) == len([k for k in state if k.endswith("._u")]) > 3
    for layer, points in curves.items():
        prefix = f"{layer}.parametrizations.weight."
        w = state[prefix + "original"].double().flatten(1)
        u, v = state[prefix + "0._u"].double(), state[prefix + "0._v"].double()
        assert points[-1][0] == 7
        assert points[-1][1] == pytest.approx((torch.linalg.svdvals(w)[0] / (u @ w @ v)).item(), rel=1e-4)


def test_dry_run_estimates_each_run_and_the_total_from_one_measurement_per_model(tmp_path):
    """issue 30 section 3: time per run = iterations x (n_dis x D step + G step), measured once per distinct model."""
    from sngan.study.preview import describe

    calls = []

    def measure(cfg):  # SN and WC differ in model.d_norm: two models, each measured once over its two seeds
        calls.append(cfg.model.d_norm)
        return (0.25, 1.0) if cfg.model.d_norm == "spectral" else (0.5, 2.0)

    text = describe(load_plan(_plan(tmp_path)), measure)
    assert sorted(calls) == ["none", "spectral"]
    sn, wc = (text.split(f"{name}-s0:")[1].split("\n")[2] for name in ("SN", "WC"))
    assert "about 12s here (250 ms/D step, 1000 ms/G step, measured)" in sn  # 7 x (3 x 0.25 + 1.0) = 12.25 s
    assert "about 24s here (500 ms/D step, 2000 ms/G step, measured)" in wc  # 7 x (3 x 0.5 + 2.0) = 24.5 s
    assert "about 1m14s of training steps for all 4 runs on this machine (device cpu" in text  # 2 x 12.25 + 2 x 24.5


def test_dry_run_estimates_runs_whose_model_was_not_measured_and_totals_all_runs(tmp_path, monkeypatch):
    """issue 38 section 5: the measuring budget ran out after one model: the other model's runs (same size, another
    normalisation) take its step time, are marked as estimates, and the total covers all runs."""
    from sngan.study import preview

    def first_model_only(configs, measure):
        return {preview.cost_key(configs[0]): measure(configs[0])}

    monkeypatch.setattr(preview, "measure_plan", first_model_only)
    text = preview.describe(load_plan(_plan(tmp_path)), lambda cfg: (0.25, 1.0))
    wc = text.split("WC-s0:")[1].split("\n")[2]
    assert "about 12s here (250 ms/D step, 1000 ms/G step, estimated from the measured models)" in wc
    assert "about 49s of training steps for all 4 runs" in text  # 4 x 7 x (3 x 0.25 + 1.0) = 49 s
    assert "2 of the 4 runs estimated from the 1 measured model(s)" in text


def test_dry_run_measures_real_steps_of_the_plans_models_quickly(tmp_path):
    from sngan.study.preview import measure_steps

    cfg = load_plan(_plan(tmp_path)).config(*load_plan(_plan(tmp_path)).runs()[0])
    d, g = measure_steps(cfg)
    assert 0 < d < 60 and 0 < g < 60  # tiny model on the CPU: milliseconds (seconds on a machine under load)
    result = runner.invoke(app, ["study", "--plan", str(_plan(tmp_path)), "--dry-run"])
    assert result.exit_code == 0 and result.output.count(" ms/D step, ") == 4, result.output


def test_dry_run_warns_when_the_evaluation_lacks_the_inception_weights(tmp_path, offline_hub):
    from sngan.study.preview import describe

    def fixed(cfg):
        return 0.1, 0.1

    evaluating = load_plan(_plan(tmp_path, evaluation={"every": 5, "protocol": "quick"}))
    warning = [line for line in describe(evaluating, fixed).splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "4 run(s) evaluate IS/FID" in warning[0]
    assert "pt_inception-2015-12-05-6726825d.pth not found" in warning[0] and "SNGAN_OFFLINE" in warning[0]
    assert "warning:" not in describe(load_plan(_plan(tmp_path)), fixed)  # no evaluation: nothing needed
    offline_hub.mkdir(parents=True)
    (offline_hub / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"present")  # found, checked at start
    assert "warning:" not in describe(evaluating, fixed)
