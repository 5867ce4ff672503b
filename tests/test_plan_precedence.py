"""Which value a study run gets when the plan, a method and a setting all set it (sngan/study/plan.py's docstring:
plan overrides, then the method, then the setting — a setting's optimiser values beat a method's — then the seed)."""

import yaml

from sngan.study.plan import load_plan
from tests.helpers import write_config


def test_a_setting_beats_a_method_which_beats_the_plan_overrides_and_the_seed_beats_all(tmp_path):
    write_config(tmp_path / "base.yaml")
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump({"optim": {"lr": 3e-4}}))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "overrides": ["optim.lr=1e-4", "optim.beta2=0.5", "train.n_dis=3"],
        "methods": {"M": ["optim.lr=2e-4", "optim.beta2=0.99", "train.seed=9"]},
        "settings": {"slow": "slow.yaml"}, "seeds": [4]}))
    plan = load_plan(tmp_path / "plan.yaml")
    (variant,) = plan.variants
    cfg = plan.config(variant, 4)
    assert variant.name == "M-slow"
    assert cfg.optim.lr == 3e-4  # setting over method over plan
    assert cfg.optim.beta2 == 0.99  # method over plan where the setting is silent
    assert cfg.train.n_dis == 3  # the plan's value where nobody else sets it
    assert cfg.train.seed == 4  # the run's seed over the method's


def test_the_plan_precision_yields_to_its_overrides_and_the_evaluation_section_beats_a_method(tmp_path):
    # plan.py's docstring: "Later overrides win: precision, plan overrides, then method, then setting, then the
    # variant's seed and evaluation"
    write_config(tmp_path / "base.yaml")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "precision": "bf16", "overrides": ["perf.precision=tf32"],
        "methods": {"M": ["train.eval_every=7"]}, "evaluation": "none", "seeds": [0]}))
    plan = load_plan(tmp_path / "plan.yaml")
    cfg = plan.config(plan.variants[0], 0)
    assert cfg.perf.precision == "tf32"  # the plan's own override over its `precision` key
    assert cfg.train.eval_every == 0  # `evaluation: none` over the method's eval_every


def test_runs_go_variant_by_variant_each_over_all_seeds(tmp_path):
    write_config(tmp_path / "base.yaml")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "methods": {"M": ["optim.lr=2e-4"], "N": ["optim.lr=1e-4"]}, "seeds": [3, 1]}))
    plan = load_plan(tmp_path / "plan.yaml")
    assert [(v.name, s) for v, s in plan.runs()] == [("M", 3), ("M", 1), ("N", 3), ("N", 1)]
