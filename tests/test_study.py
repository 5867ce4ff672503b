"""`sngan study`: plans load strictly, runs are skipped or resumed, and the table and figures are written."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import StudyError
from sngan.study.plan import load_plan
from tests.helpers import CONFIGS, assert_drawn_png, one_line, train_until, write_config

runner = CliRunner()


def tiny_plan(tmp_path: Path, **extra) -> Path:
    write_config(tmp_path / "base.yaml", {"train": {"iterations": 2, "n_dis": 1, "ckpt_every": 1,
                                                    "sample_every": 0}})
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump({"optim": {"lr": 1e-3}}))
    plan = {"base": "base.yaml", "out": str(tmp_path / "study"),
            "methods": {"SN": ["model.d_norm=spectral"],
                        "WGAN-GP": ["model.d_norm=none", "loss.type=wasserstein", "loss.gp_weight=10"]},
            "settings": {"fast": "fast.yaml"}, "seeds": [0], "evaluation": "none", **extra}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def checkpoint_times(study: Path) -> dict[str, float]:
    return {str(p.relative_to(study)): p.stat().st_mtime_ns for p in study.glob("*/checkpoints/*.pt")}


def test_cross_product_names_and_setting_files_win_over_methods(tmp_path):
    plan = load_plan(tiny_plan(tmp_path, overrides=["optim.lr=5e-4"]))
    assert [v.name for v in plan.variants] == ["SN-fast", "WGAN-GP-fast"]
    cfg = plan.config(plan.variants[1], 3)
    assert cfg.optim.lr == 1e-3 and cfg.loss.gp_weight == 10 and cfg.train.seed == 3 and cfg.train.eval_every == 0


@pytest.mark.parametrize("extra, message", [
    ({"seed": [0]}, "unknown key 'seed'"),
    ({"seeds": [0, 0]}, "distinct integers"),
    ({"methods": {"bad name": ["model.d_norm=none"]}}, "no spaces"),
    ({"methods": {"WC": ["optim.d_weight_clip=0.01"]}}, "variant 'WC-fast'"),
    ({"settings": {"X": "missing.yaml"}}, "config file not found"),
    ({"evaluation": {"num_samples": 10}}, "key 'evaluation'"),
    # the plan's keys are a schema read by the config's machinery: the same one-line messages, nested keys named
    ({"slurm": {"time_min": 0}}, "key 'slurm.time_min' must be >= 1, got 0"),
    ({"slurm": {"time_mins": 5}}, r"unknown key 'slurm.time_mins' \(did you mean 'time_min'\?\)"),
    ({"precision": "fp64"}, r"key 'precision' must be one of auto\|fp32\|tf32\|bf16, got 'fp64'"),
    ({"seeds": [1, -1]}, r"key 'seeds\[1\]' must be >= 0, got -1"),
    ({"seeds": "0"}, "key 'seeds' must be a list, got a string"),
    ({"slurm": {"sbatch": "--account=x"}}, "key 'slurm.sbatch' must be a list, got a string"),  # a tuple field
    ({"evaluation": {"every": 5, "protocol": "papr"}},
     r"key 'evaluation.protocol' must be one of standard\|paper\|quick, got 'papr'"),
    ({"evaluation": {"every": 10**12}}, "key 'evaluation.every' must be <="),  # train.eval_every's own bound
    ({"variants": [{"name": "x", "overrides": [], "extra": 1}]}, r"unknown key 'variants\[0\].extra'"),
    ({"settings": {"X": 5}}, "key 'settings.X' must be a string or a list, got an integer 5"),
])
def test_bad_plans_fail_in_one_line_before_training(tmp_path, extra, message):
    with pytest.raises(StudyError, match=message) as info:
        load_plan(tiny_plan(tmp_path, **extra))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "study").exists()


def test_a_missing_or_empty_plan_is_named_a_study_plan_not_a_config_file(tmp_path):
    with pytest.raises(StudyError, match="nothing.yaml: study plan not found$"):
        load_plan(tmp_path / "nothing.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(StudyError, match=r"empty.yaml: the study plan is empty; start from a plan in configs/study/$"):
        load_plan(tmp_path / "empty.yaml")


def test_study_runs_then_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    plan_path = tiny_plan(tmp_path)
    study = tmp_path / "study"
    plan = load_plan(plan_path)
    sn, wgan = plan.variants
    train_until(plan.config(wgan, 0), study / "WGAN-GP-fast-s0", 1, progress=False, log=lambda _: None)
    first = runner.invoke(app, ["study", "--plan", str(plan_path), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "WGAN-GP-fast-s0: resuming from ckpt-0000001.pt" in first.output
    records = [json.loads(line) for line in (study / "study.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["method"], r["setting"], r["status"], r["step"]) for r in records] == \
        [("SN-fast", "SN", "fast", "finished", 2), ("WGAN-GP-fast", "WGAN-GP", "fast", "finished", 2)]
    assert all(r["sec_per_g_iter"] > 0 and not r["diverged"] for r in records)
    steps = [json.loads(x)["step"] for x in (study / "WGAN-GP-fast-s0" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # the resumed run continued its log
    for name in ("metric-d_loss.png", "seconds_per_iteration.png", "samples.png"):
        assert_drawn_png(study / name)
    assert "| SN-fast | 0 | finished | 2 |" in (study / "study.md").read_text()
    before = checkpoint_times(study)
    second = runner.invoke(app, ["study", "--plan", str(plan_path), "--no-progress"])
    assert second.exit_code == 0, second.output
    assert "2 runs, 2 already done" in second.output and "done: step" not in second.output
    assert checkpoint_times(study) == before and len(before) == 4


def test_a_changed_plan_over_an_existing_study_is_refused(tmp_path):
    plan_path = tiny_plan(tmp_path, settings={"fast": ["optim.lr=1e-3"]}, methods={"SN": []})
    assert runner.invoke(app, ["study", "--plan", str(plan_path), "--no-progress"]).exit_code == 0
    changed = tiny_plan(tmp_path, settings={"fast": ["optim.lr=2e-3"]}, methods={"SN": []})
    result = runner.invoke(app, ["study", "--plan", str(changed), "--no-progress"])
    assert result.exit_code == 1 and "another config" in result.output


@pytest.mark.parametrize("name", ["demo.yaml", "figure1_cifar10.yaml"])
def test_shipped_plans_load(name):
    plan = load_plan(CONFIGS / "study" / name)
    assert len(plan.runs()) >= 4


def test_a_nul_byte_in_a_plan_out_is_one_line(tmp_path):
    plan = tiny_plan(tmp_path, out="st\x00udy")
    result = runner.invoke(app, ["study", "--plan", str(plan), "--list"])
    assert result.exit_code == 1 and "key 'out' must not contain a NUL byte" in one_line(result)


def test_a_runs_summary_takes_last_values_best_is_and_fid_by_value_and_the_median_speed(tmp_path):
    from types import SimpleNamespace

    from sngan.study.plan import Variant
    from sngan.study.run import markdown, summarize

    run = tmp_path / "M-A-s0"
    run.mkdir()
    log = [{"step": 1, "d_loss": 1.0, "g_loss": 2.0, "lr": 1e-4, "it_per_s": 2.0},
           {"step": 2, "is_x": 3.0, "is_x_std": 0.1, "fid_x": 35.0},
           {"step": 3, "d_loss": 0.5, "g_loss": 1.5, "lr": 1e-4, "it_per_s": 4.0},
           {"step": 4, "is_x": 6.0, "is_x_std": 0.2, "fid_x": 30.0},
           {"step": 5, "d_loss": 0.25, "g_loss": 1.25, "lr": 1e-4, "it_per_s": 10.0},
           {"step": 6, "is_x": 4.0, "is_x_std": 0.3, "fid_x": 33.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    record = summarize(run, Variant("M-A", "M", "A", ()), 0, known=("done", ""))
    assert record["final"] == {"d_loss": 0.25, "g_loss": 1.25, "is_x": 4.0, "is_x_std": 0.3, "fid_x": 33.0}
    assert record["best"] == {"is_x": {"value": 6.0, "step": 4}, "fid_x": {"value": 30.0, "step": 4}}
    assert record["sec_per_g_iter"] == pytest.approx(1 / 4)  # 1 / median(2, 4, 10) iterations per second
    assert record["step"] == 6
    plan = SimpleNamespace(path=Path("plan.yaml"), base=Path("base.yaml"), evaluation=True)
    table = markdown(plan, [record], [])
    assert "| variant | seed | status | steps | final d_loss | final g_loss | is_x | is_x_std | fid_x |" in table
    assert "| M-A | 0 | done | 6 | 0.25 | 1.25 | 4 | 0.3 | 33 | 0.25 |" in table


def test_study_bars_are_the_mean_over_seeds_with_their_population_std_leaving_diverged_runs_out(tmp_path,
                                                                                                  monkeypatch):
    import math

    from matplotlib.axes import Axes

    from sngan.study.figures import grouped_bars

    bars, bar = [], Axes.bar

    def recorded(self, x, height, width, yerr=None, **kwargs):
        bars.append((height, yerr))
        return bar(self, x, height, width, yerr=yerr, **kwargs)

    monkeypatch.setattr(Axes, "bar", recorded)
    records = [{"method": "M", "setting": "A", "diverged": False, "v": v} for v in (1.0, 2.0, 6.0)]
    records.append({"method": "M", "setting": "A", "diverged": True, "v": 100.0})
    grouped_bars(records, lambda r: r["v"], "t", "y", tmp_path / "bars.png")
    ((height, err),) = bars
    assert height == pytest.approx(3.0)  # (1 + 2 + 6) / 3, not the median 2 nor with the diverged run's 100
    assert err == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 3))


def test_study_figures_chart_each_is_and_fid_but_not_their_std_over_splits(tmp_path):
    from sngan.study.figures import write_figures

    (tmp_path / "M-s0").mkdir()
    record = {"variant": "M", "method": "M", "setting": "", "seed": 0, "run_dir": "M-s0", "diverged": False,
              "status": "done", "final": {"d_loss": 0.5, "is_x": 4.0, "is_x_std": 0.3, "fid_x": 33.0},
              "sec_per_g_iter": 0.25}
    names = [p.name for p in write_figures([record], tmp_path, evaluation=True)]
    assert [n for n in names if n.startswith("metric-")] == ["metric-is_x.png", "metric-fid_x.png"]
