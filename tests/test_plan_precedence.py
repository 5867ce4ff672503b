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
