"""Every training-relevant value of every paper config (configs/*.yaml but demo.yaml, which is ours, and
configs/paper/settings/*.yaml) against a table typed here from the sources, never from our YAML:

- the paper: Miyato, Kataoka, Koyama, Yoshida, "Spectral Normalization for Generative Adversarial Networks", ICLR 2018
  (section 4 and 4.1, Table 1 settings A-F, Tables 2-6, App. A, B.1-B.3);
- the authors' code, pfnet-research/sngan_projection at e84b1a5 (configs/*.yml, updater.py, train.py, train_mn.py,
  datasets/*.py, dis_models/*.py, README_paper.md), for the ResNets and ImageNet;
- PFN's chainer-gan-lib at 7861e6c (train.py, common/net.py, stdgan/updater.py), the SN-DCGAN the standard-CNN configs
  follow where the paper is silent (the authors published no CNN config).

Where a config departs from these on purpose (a documented choice of ours), its row pins what the config's comment
says and cites both. A changed value fails here naming the config, the key, the source's value and ours.
"""

import pytest

from sngan.config import field_help, load_config
from sngan.models.cnn import D_MULT
from sngan.models.resnet import LAYOUTS
from tests.helpers import CONFIGS
from tests.test_study_paper import TABLE_1  # setting -> (alpha, beta1, beta2, n_dis), the paper's Table 1

UNUSED = "unused"  # a row's value that the config's other values make irrelevant (see GATES); not compared

# Keys a run's maths does not depend on: where files live and how often to log, sample, save, check or measure;
# speed knobs with the same maths; the seed (the paper trains "with multiple random seeds", Table 2 footnote 5).
NOT_TRAINING = {
    "data.root", "data.download", "data.num_images", "data.cache_dir", "data.device_budget_mb",
    "train.seed", "train.device", "train.log_every", "train.sample_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.num_samples", "train.ema_bn_samples", "train.inspect_every", "train.eval_every",
    "train.eval_inception_weights", "train.wandb_project", "train.wandb_entity", "train.wandb_mode",
    "perf.channels_last", "perf.compile", "perf.fused_adam",
}
GATES = {  # key -> (the key whose value makes it unused, that value)
    "model.d_conditioning": ("model.num_classes", 0),  # the label's way into D: no label
    "optim.lr_decay_start": ("optim.lr_decay", "none"),  # where decay starts: no decay
    "train.ema_start": ("train.ema_decay", 0.0),  # when the EMA starts: no EMA
}

# The authors' configs: the training fields of configs/*.yml in pfnet-research/sngan_projection, typed from the files.
# gen/dis: the models' `fn` (dis also its `name`); ch: the models' `args.ch`; size: the dataset's `args.size`.
AUTHORS = {
    "sn_cifar10_unconditional.yml": dict(
        batchsize=64, iteration=50000, iteration_decay_start=0, dim_z=128, gen="resnet_32.py", gen_ch=256,
        dis="snresnet_32.py SNResNetProjectionDiscriminator", dis_ch=128, n_classes=0,
        dataset="cifar10.py CIFAR10Dataset(test=False)", alpha=0.0002, beta1=0.0, beta2=0.9, n_dis=5,
        n_gen_samples=128, loss_type="hinge"),
    "sn_cifar10_conditional.yml": dict(
        batchsize=64, iteration=50000, iteration_decay_start=0, dim_z=128, gen="resnet_32.py", gen_ch=256,
        dis="snresnet_32.py SNResNetProjectionDiscriminator", dis_ch=128, n_classes=10,
        dataset="cifar10.py CIFAR10Dataset(test=False)", alpha=0.0002, beta1=0.0, beta2=0.9, n_dis=5,
        n_gen_samples=128, loss_type="hinge"),
    "sn_projection_64.yml": dict(
        batchsize=64, iteration=250000, iteration_decay_start=200000, dim_z=128, gen="resnet_64.py", gen_ch=64,
        dis="snresnet_64.py SNResNetProjectionDiscriminator", dis_ch=64, n_classes=1000,
        dataset="imagenet.py ImageNetDataset", size=64, alpha=0.0002, beta1=0.0, beta2=0.9, n_dis=5,
        n_gen_samples=64, loss_type="hinge"),
    "sn_projection.yml": dict(
        batchsize=16, iteration=450000, iteration_decay_start=400000, dim_z=128, gen="resnet.py", gen_ch=64,
        dis="snresnet.py SNResNetProjectionDiscriminator", dis_ch=64, n_classes=1000,
        dataset="imagenet.py ImageNetDataset", size=128, alpha=0.0002, beta1=0.0, beta2=0.9, n_dis=5,
        n_gen_samples=32, loss_type="hinge"),
    "sn_concat.yml": dict(
        batchsize=16, iteration=450000, iteration_decay_start=400000, dim_z=128, gen="resnet.py", gen_ch=64,
        dis="snresnet.py SNResNetConcatDiscriminator", dis_ch=64, n_classes=1000,
        dataset="imagenet.py ImageNetDataset", size=128, alpha=0.0002, beta1=0.0, beta2=0.9, n_dis=5,
        n_gen_samples=32, loss_type="hinge"),
}
# README_paper.md: "All of the results showed in the papers are produced by the models trained on 4 GPUs"
# (`mpiexec -n 4 python train_mn.py --config=configs/sn_projection.yml`); train_mn.py's ChainerMN optimiser averages
# the gradients of the 4 workers, each drawing `batchsize` real and `n_gen_samples` fake images: global batches x 4.
# sn_projection_64.yml is trained on one GPU (README.md: `python train.py --config=configs/sn_projection_64.yml`).
GPUS = {"sn_projection.yml": 4, "sn_concat.yml": 4}
# The authors' last D layer: dis_models/snresnet_32.py `SNLinear(ch, 1, ..., nobias=True)`; snresnet.py
# `self.l7 = SNLinear(ch * 16, 1, initialW=initializer)` and snresnet_64.py `self.l6 = SNLinear(ch * 16, 1, ...)`:
# source/links/sn_linear.py's default `nobias=False`, a bias.
AUTHORS_D_BIAS = {"snresnet_32.py": False, "snresnet.py": True, "snresnet_64.py": True}


def authors(name: str) -> dict:
    """Our keys as the authors' config `name` sets them (their code's behaviour, each line citing the file)."""
    a, gpus = AUTHORS[name], GPUS.get(name, 1)
    return {
        "model.z_dim": a["dim_z"],
        "model.g_ch": a["gen_ch"], "model.d_ch": a["dis_ch"],
        "model.num_classes": a["n_classes"],
        # SNResNetProjectionDiscriminator: <embed(y), h> added to the output; SNResNetConcatDiscriminator: concat
        "model.d_conditioning": ("concat" if a["dis"].endswith("ConcatDiscriminator") else "projection")
        if a["n_classes"] else UNUSED,
        "model.d_linear_bias": AUTHORS_D_BIAS[a["dis"].split()[0]],
        "loss.type": {"hinge": "hinge", "dcgan": "nonsaturating"}[a["loss_type"]],  # updater.py's two losses
        "optim.lr": a["alpha"], "optim.beta1": a["beta1"], "optim.beta2": a["beta2"],
        # train.py / train_mn.py: extensions.LinearShift('alpha', (alpha, 0.), (iteration_decay_start, iteration))
        "optim.lr_decay": "linear", "optim.lr_decay_start": a["iteration_decay_start"],
        "train.iterations": a["iteration"],
        "train.n_dis": a["n_dis"],
        "train.batch_size": a["batchsize"] * gpus,  # updater.py: each D step `batchsize` real and as many fakes
        "train.g_batch_size": a["n_gen_samples"] * gpus,  # updater.py: the G step's `_generete_samples()`
        # datasets/cifar10.py and imagenet.py: `image / 128. - 1.` plus `np.random.uniform(..., high=1. / 128)`
        "data.dequantize": True,
    }


# What the paper fixes for every SN-GAN it trains (the comparison methods of section 4.1 are study plans, pinned in
# tests/test_study_paper.py).
SN_GAN = {
    "model.z_dim": 128,  # section 4: "We set dz to 128 for all of our experiments."
    "model.d_norm": "spectral",  # the method itself (section 2.1, eq. 8)
    # App. A: "one round of power iteration was sufficient in the actual experiment"; the authors' max_sv.py
    # `max_singular_value(W, u=None, Ip=1)` and SNLinear/SNConvolution2D/SNEmbedID `Ip=1`
    "model.sn_power_iterations": 1,
    # Algorithm 1: "Initialize u_l ... with a random vector (sampled from isotropic distribution)"; max_sv.py:
    # `u = xp.random.normal(size=(1, W.shape[0]))`, then v from u and u from v at each forward ("random")
    "model.sn_algorithm": "random",
    # section 4.1: gamma is excluded "for all comparative studies"; the multiplier is App. E's reparametrisation
    # (with WGAN-GP), not SN-GAN's; the authors' SN links default `use_gamma=False`
    "model.d_norm_gamma": False,
    "loss.gp_weight": 0.0,  # the gradient penalty is the GAN-GP/WGAN-GP comparison (section 4.1), not SN-GAN
    "loss.orthonormal_weight": 0.0,  # orthonormal regularisation (eq. 14) is a comparison method
    "optim.d_weight_clip": 0.0,  # weight clipping (c = 0.01) is a comparison method
    # the paper names no moving average of G; the authors' updater.py updates G by Adam alone
    "train.ema_decay": 0.0, "train.ema_start": UNUSED,
    # the authors' updater.py calls dis(x_real) and dis(x_fake) apart: two power iterations per D step
    "perf.d_single_pass": False,
    # App. B.1: IS of "randomly generated 5000 examples", "repeated ... 10 times"; FID "over 10000 and 5000 samples"
    # (the "paper" protocol; 0 = its counts). The authors' calc_inception_score.py: 5000 x 10 splits, the same count.
    "train.eval_protocol": "paper", "train.eval_num_samples": 0,
    # ours: bf16 autocast on CUDA (fp32 on CPU; power iteration, losses and weights in fp32). The paper states no
    # precision; the authors' Chainer code trains in fp32 (`.astype("f")`). Study plans set fp32 (test_study_paper).
    "perf.precision": "auto",
}

# App. B.2: "we used the very hyper parameter used in Gulrajani et al. (2017) (alpha = 0.0002, beta1 = 0,
# beta2 = 0.9, ndis = 5)"; B.3 (ImageNet): "we used Adam with the same hyperparameters we used for ResNet on CIFAR-10
# and STL-10 dataset".
APP_B2 = {"optim.lr": 2e-4, "optim.beta1": 0.0, "optim.beta2": 0.9, "train.n_dis": 5}


def setting(name: str) -> dict:
    """Table 1's row `name` as our keys."""
    lr, beta1, beta2, n_dis = TABLE_1[name]
    return {"optim.lr": lr, "optim.beta1": beta1, "optim.beta2": beta2, "train.n_dis": n_dis}


def agree(*sources: dict) -> dict:
    """The union of several sources' rows; a key two of them set must have one value (else the table is wrong)."""
    out: dict = {}
    for source in sources:
        for key, value in source.items():
            assert out.get(key, value) == value, f"the sources disagree on {key}: {out[key]!r} vs {value!r}"
            out[key] = value
    return out


STANDARD_CNN = {  # the standard CNN of Table 3 and its training in the paper (section 4, 4.1), chainer-gan-lib
    **SN_GAN,
    "model.arch": "cnn",  # Table 3
    "model.num_classes": 0, "model.d_conditioning": UNUSED,  # section 4: "unsupervised image generation"
    "model.g_ch": 512,  # Table 3a: "dense -> Mg x Mg x 512", deconvs 256, 128, 64 (WIDTHS below)
    "model.d_ch": 64,  # Table 3b: convs 64, 64, 128, 128, 256, 256, 512 (WIDTHS below)
    # Table 3 is silent on the dense layer's bias; chainer-gan-lib common/net.py SNDCGANDiscriminator:
    # `self.l4 = SNLinear(bottom_width * bottom_width * ch, output_dim, initialW=w)`, nobias=False
    "model.d_linear_bias": True,
    # section 4: "For the updates of G, we used the alternate cost ... -E[log(D(G(z)))]", D by eq. (15); the Table 2
    # rows "(ours) SN-GANs" (7.42, 8.28), not "SN-GANs, Eq.(17)" (the hinge rows)
    "loss.type": "nonsaturating",
    # the paper decays the rate only on ImageNet (App. B.3); chainer-gan-lib train.py has no LinearShift
    "optim.lr_decay": "none", "optim.lr_decay_start": UNUSED,
    "train.iterations": 100_000,  # section 4.1: "The number of updates for GAN generator were 100K"
    # the paper states no batch size; chainer-gan-lib train.py `--batchsize default=64`, and stdgan/updater.py draws
    # the G step's fakes with the same `batchsize`
    "train.batch_size": 64, "train.g_batch_size": 64,
    # the paper is silent; chainer-gan-lib's Cifar10Dataset does `ims * 2 - 1.0` (no noise). Ours: the authors'
    # later sngan_projection datasets/cifar10.py dequantisation `x / 128. - 1. + U(0, 1/128)` (the config says so)
    "data.dequantize": True,
}

ROWS = {
    "cifar10_cnn": agree(STANDARD_CNN, {
        "data.name": "cifar10", "data.split": "train",  # section 4; chainer-gan-lib Cifar10Dataset(test=False)
        "model.resolution": 32,  # Table 3: "M = 32 for SVHN and CIFAR10", "Mg = 4"
    }, setting("C")),  # the paper does not name the CIFAR-10 CNN's setting in Table 2 (footnote 4 names B for
    # STL-10); C is its Figure 9's (App. C.1: "The setting of the optimizer is C in Table 1 throughout the training")
    # and chainer-gan-lib's example.sh SN-DCGAN: `--n_dis 1 --adam_beta1 0.5 --adam_beta2 0.999`, alpha default 0.0002
    "stl10_cnn": agree(STANDARD_CNN, {
        # section 4: STL-10; the split is not named: ours, the 100k unlabeled images (the config says so)
        "data.name": "stl10", "data.split": "unlabeled",
        "model.resolution": 48,  # Table 3: "M = 48 for STL-10", "Mg = 6 for STL-10"
    }, setting("B")),  # footnote 4: "the optimal setting of SN-GANs (setting B, ndis = 1)"
    "cifar10_resnet": agree(SN_GAN, authors("sn_cifar10_unconditional.yml"), APP_B2, {
        "data.name": "cifar10", "data.split": "train",  # the authors' CIFAR10Dataset(test=False): the 50k train images
        "model.arch": "resnet", "model.resolution": 32,  # Table 4: "RGB image x in R^32x32x3"
        "loss.type": "hinge",  # Table 2's ResNet row: "(ours) SN-GANs, Eq.(17)"
        # ours, cited by the config: the authors' `iteration: 50000`, where section 4.1 says "100K for all
        # experiments, unless otherwise noted" (train.iterations=100000 is the paper's count)
        "train.iterations": 50_000,
    }),
    "cifar10_resnet_conditional": agree(SN_GAN, authors("sn_cifar10_conditional.yml"), APP_B2, {
        "data.name": "cifar10", "data.split": "train",  # CIFAR10Dataset(test=False)
        "model.arch": "resnet", "model.resolution": 32,  # resnet_32.py / snresnet_32.py (Table 4)
    }),
    "stl10_resnet": agree(SN_GAN, APP_B2, {
        "data.name": "stl10", "data.split": "unlabeled",  # the split is not named: ours, as stl10_cnn
        "data.dequantize": True,  # ours, as the authors' CIFAR-10 and ImageNet loaders (no STL-10 code exists)
        "model.arch": "resnet", "model.resolution": 48,  # Table 5: "RGB image x in R^48x48x3"
        "model.g_ch": 64,  # Table 5a: "dense, 6 x 6 x 512", up 256, 128, 64 (WIDTHS below)
        "model.d_ch": 64,  # Table 5b: down 64, 128, 256, 512, then 1024 (WIDTHS below)
        "model.num_classes": 0, "model.d_conditioning": UNUSED,  # unsupervised (section 4)
        # Table 5 is silent; ours, as the authors' deeper Ds snresnet.py / snresnet_64.py (bias), not snresnet_32.py
        "model.d_linear_bias": True,
        "loss.type": "hinge",  # Table 2's ResNet row: "(ours) SN-GANs, Eq.(17)" (9.10, 40.1)
        # the paper names no decay for STL-10; ours: the authors' CIFAR-10 configs' LinearShift from
        # `iteration_decay_start: 0` (the config says so)
        "optim.lr_decay": "linear", "optim.lr_decay_start": 0,
        "train.iterations": 100_000,  # section 4.1: "100K for all experiments, unless otherwise noted"
        # the paper states none; ours: the authors' CIFAR-10 config `batchsize: 64`, `n_gen_samples: 128`
        "train.batch_size": 64, "train.g_batch_size": 128,
    }),
    "imagenet64_projection": agree(SN_GAN, authors("sn_projection_64.yml"), APP_B2, {
        "data.name": "imagenet", "data.split": "train",  # datasets/imagenet.py over the ILSVRC2012 train list
        "model.arch": "resnet",
        "model.resolution": 64,  # sn_projection_64.yml `size: 64`
    }),
    "imagenet128_projection": agree(SN_GAN, authors("sn_projection.yml"), APP_B2, {
        "data.name": "imagenet", "data.split": "train",
        "model.arch": "resnet",
        "model.resolution": 128,  # `size: 128`; App. B.3: "resized to 128 x 128 pixels"
        # App. B.3: "We trained the networks with 450K generator updates, and applied linear decay for the learning
        # rate after 400K iterations so that the rate would be 0 at the end."
        "train.iterations": 450_000, "optim.lr_decay": "linear", "optim.lr_decay_start": 400_000,
    }),
    "imagenet128_concat": agree(SN_GAN, authors("sn_concat.yml"), APP_B2, {
        "data.name": "imagenet", "data.split": "train",
        "model.arch": "resnet",
        "model.resolution": 128,
        # Table 6c: "Concat(Embed(y), h)" after the third down block
        "model.d_conditioning": "concat",
        "train.iterations": 450_000, "optim.lr_decay": "linear", "optim.lr_decay_start": 400_000,  # App. B.3
    }),
    # No authors' unconditional ImageNet config: Table 6 and App. B.3 for what they say; the rest (batch sizes,
    # widths' base, the D's bias) as sn_projection.yml, which the config names as its source.
    "imagenet128_unconditional": agree(SN_GAN, APP_B2, {
        **{key: value for key, value in authors("sn_projection.yml").items()
           if key not in ("model.num_classes", "model.d_conditioning", "loss.type")},
        "data.name": "imagenet", "data.split": "train",
        "model.arch": "resnet", "model.resolution": 128,  # Table 6b: "RGB image x in R^128x128x3"
        "model.num_classes": 0, "model.d_conditioning": UNUSED,  # Table 6b: "Discriminator for unconditional GANs"
        "loss.type": "hinge",  # section 4.2: "we replaced the standard GANs loss with hinge loss (17)"
        "train.iterations": 450_000, "optim.lr_decay": "linear", "optim.lr_decay_start": 400_000,  # App. B.3
    }),
}

# The networks' widths as the sources print them, against the config's base widths times the model's per-resolution
# multipliers (sngan.models.resnet.LAYOUTS, sngan.models.cnn): (G's dense width, G's block widths), D's block widths.
WIDTHS = {
    # Table 3a: dense "Mg x Mg x 512", deconvs "BN 256", "BN 128", "BN 64"; 3b: convs 64, 64, 128, 128, 256, 256, 512
    "cnn": ((512, (256, 128, 64)), (64, 64, 128, 128, 256, 256, 512)),
    # Table 4a: "dense, 4 x 4 x 256", "ResBlock up 256" x 3; 4b: "ResBlock down 128" x 2, "ResBlock 128" x 2
    32: ((256, (256, 256, 256)), (128, 128, 128, 128)),
    # Table 5a: "dense, 6 x 6 x 512", up 256, 128, 64; 5b: down 64, 128, 256, 512, "ResBlock 1024"
    48: ((512, (256, 128, 64)), (64, 128, 256, 512, 1024)),
    # the authors' resnet_64.py: l1 `ch * 16`, blocks to ch * 8, * 4, * 2, ch; snresnet_64.py: ch .. ch * 16 (ch: 64)
    64: ((1024, (512, 256, 128, 64)), (64, 128, 256, 512, 1024)),
    # Table 6a: "dense, 4 x 4 x 1024", up 1024, 512, 256, 128, 64; 6b/6c: down 64, 128, 256, 512, 1024, "ResBlock 1024"
    128: ((1024, (1024, 512, 256, 128, 64)), (64, 128, 256, 512, 1024, 1024)),
}

# configs/paper/settings/<X>.yaml: Table 1's row X (alpha, beta1, beta2, n_dis), and nothing else.
SETTINGS = {name: setting(name) for name in TABLE_1}


def training_keys() -> set[str]:
    return {key for key, *_ in field_help()} - NOT_TRAINING


def flat(cfg) -> dict:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items() for key, value in values.items()}


def test_the_table_has_a_row_for_every_paper_config_and_every_training_key():
    shipped = {path.stem for path in CONFIGS.glob("*.yaml")} - {"demo"}  # demo.yaml is ours
    assert set(ROWS) == shipped
    assert NOT_TRAINING <= {key for key, *_ in field_help()}  # no stale name among the exclusions
    for name, row in ROWS.items():
        assert set(row) == training_keys(), (name, set(row) ^ training_keys())
        for key, (gate, value) in GATES.items():
            assert row[key] != UNUSED or row[gate] == value, (name, key)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_paper_config_sets_what_its_sources_say(name):
    got = flat(load_config(CONFIGS / f"{name}.yaml"))
    wrong = {key: (want, got[key]) for key, want in ROWS[name].items() if want != UNUSED and got[key] != want}
    assert not wrong, f"{name}.yaml departs from its sources (key: (source, config)): {wrong}"
    assert all(type(got[key]) is type(want) for key, want in ROWS[name].items() if want != UNUSED)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_paper_configs_widths_are_the_source_tables_widths(name):
    m = load_config(CONFIGS / f"{name}.yaml").model
    (g_dense, g_blocks), d_blocks = WIDTHS["cnn" if m.arch == "cnn" else m.resolution]
    if m.arch == "cnn":  # sngan.models.cnn: dense g_ch, each deconv halves; D d_ch x D_MULT
        assert (m.g_ch, (m.g_ch // 2, m.g_ch // 4, m.g_ch // 8)) == (g_dense, g_blocks)
        assert tuple(m.d_ch * k for k in D_MULT) == d_blocks
    else:
        layout = LAYOUTS[m.resolution]
        assert (m.g_ch * layout["g_mult"][0], tuple(m.g_ch * k for k in layout["g_mult"][1:])) == (g_dense, g_blocks)
        assert tuple(m.d_ch * k for k in layout["d_mult"]) == d_blocks


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_settings_file_is_its_table_1_row_and_nothing_else(name):
    import yaml

    raw = yaml.safe_load((CONFIGS / "paper" / "settings" / f"{name}.yaml").read_text())
    got = {f"{section}.{key}": value for section, values in raw.items() for key, value in values.items()}
    assert got == SETTINGS[name], f"settings/{name}.yaml is not Table 1's row {name}: {got} vs {SETTINGS[name]}"
