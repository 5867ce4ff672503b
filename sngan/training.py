"""The training loop: TrainState, g_step, d_step, and `train`, which reads top to bottom.

One generator iteration, as the authors' `updater.py`: a G step on `g_batch_size` fresh latents, then `n_dis`
D steps, each on a fresh real batch and fresh fakes; real and fake go through D in two forward passes, so spectral
norm's power iteration runs once per pass exactly as in the Chainer code. The learning rate decays linearly (in G
iterations) from `optim.lr_decay_start` to 0 at `train.iterations`.

A run lives in one directory: config.yaml, metrics.jsonl, samples/, checkpoints/. `train(..., resume=...)` continues
bitwise-exactly on CPU: every RNG in use, both optimizers, the EMA generator and the data order are checkpointed.
"""

from __future__ import annotations

import copy
import json
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sngan import checkpoint as ckpt
from sngan.config import Config, SnganError, to_yaml
from sngan.data import Batches, StreamBatches, epochs, load_images, make_batches
from sngan.losses import get_losses
from sngan.models import build_discriminator, build_generator, count_parameters
from sngan.rundir import append_jsonl, check_fresh
from sngan.sampling import generate, latents, save_grid


class TrainingStopped(SnganError):
    """Training ended early on purpose (a signal) after saving a checkpoint."""


class TrainingDiverged(SnganError):
    """A loss or weight became NaN/inf; no checkpoint was written after that point."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SnganError("train.device is cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def lr_at(base_lr: float, decay: str, decay_start: int, iterations: int, step: int) -> float:
    """Learning rate for the G iteration `step` (0-based): constant, then linear to 0 at `iterations`."""
    if decay == "none" or step <= decay_start:
        return base_lr
    return base_lr * max(0.0, 1.0 - (step - decay_start) / (iterations - decay_start))


def models_differ(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the `model` config section whose values differ between two configs."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


@dataclass
class TrainState:
    """Everything that changes during training and is checkpointed."""

    cfg: Config
    device: torch.device
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: Batches | StreamBatches
    generator_ema: nn.Module | None = None
    step: int = 0
    best: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The checkpoint dict (plain data only)."""
        np_state = np.random.get_state()
        rng = {"python": random.getstate(), "torch": torch.get_rng_state(), "data": self.batches.state_dict(),
               "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": None if self.generator_ema is None else self.generator_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng,
            "best": self.best,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint dict produced by `snapshot` (same model config)."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(state.get("generator_ema") or state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        rng = state["rng"]
        random.setstate(_as_tuple(rng["python"]))
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(rest[0]), int(rest[1]), rest[2]))
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.batches.load_state_dict(rng["data"])
        self.step = int(state["step"])
        self.best = state.get("best")


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def build_state(cfg: Config, device: torch.device, log: Callable[[str], None] = print) -> TrainState:
    """Seeded models, optimizers and data for `cfg` on `device`."""
    seed_everything(cfg.train.seed)
    image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, log=log)
    _check_labels(cfg, len(image_set.classes))
    passes = epochs(len(image_set.images), cfg.train.iterations, cfg.train.n_dis, cfg.train.batch_size)
    log(f"{image_set.summary()}; {passes:.1f} epochs")
    generator = build_generator(cfg.model).to(device)
    discriminator = build_discriminator(cfg.model).to(device)
    betas = (float(cfg.optim.beta1), float(cfg.optim.beta2))
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr, betas=betas)
    ema = copy.deepcopy(generator).requires_grad_(False) if cfg.train.ema_decay > 0 else None
    batches = make_batches(image_set, device, seed=cfg.train.seed + 1, dequantize=cfg.data.dequantize,
                           budget_mb=cfg.data.device_budget_mb, log=log)
    return TrainState(cfg, device, generator, discriminator, opt_g, opt_d, batches, ema)


def _check_labels(cfg: Config, num_data_classes: int) -> None:
    k = cfg.model.num_classes
    if k and num_data_classes < 2:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} class: a conditional "
                         f"model needs a class-folder tree with at least 2 classes")
    if k and k != num_data_classes:
        raise SnganError(f"model.num_classes is {k} but the dataset has {num_data_classes} classes")


def _fake_labels(state: TrainState, n: int) -> torch.Tensor | None:
    k = state.cfg.model.num_classes
    return torch.randint(0, k, (n,), device=state.device) if k else None


def g_step(state: TrainState, g_loss_fn: Callable) -> torch.Tensor:
    """One generator update on fresh latents; D's weights get no gradient. Returns the loss (0-d tensor)."""
    n = state.cfg.train.g_batch_size
    z = torch.randn(n, state.cfg.model.z_dim, device=state.device)
    y = _fake_labels(state, n)
    state.discriminator.requires_grad_(False)
    loss = g_loss_fn(state.discriminator(state.generator(z, y), y))
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_g.step()
    state.discriminator.requires_grad_(True)
    return loss.detach()


def d_step(state: TrainState, d_loss_fn: Callable) -> torch.Tensor:
    """One discriminator update on a fresh real batch and fresh fakes. Returns the loss (0-d tensor)."""
    n = state.cfg.train.batch_size
    x_real, y_real = state.batches.next(n)
    z = torch.randn(n, state.cfg.model.z_dim, device=state.device)
    y_fake = _fake_labels(state, n)
    with torch.no_grad():
        x_fake = state.generator(z, y_fake)
    y_real = y_real if state.cfg.model.num_classes else None
    loss = d_loss_fn(state.discriminator(x_real, y_real), state.discriminator(x_fake, y_fake))
    state.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_d.step()
    return loss.detach()


@torch.no_grad()
def ema_update(state: TrainState) -> None:
    """EMA of G's parameters (copy before ema_start); BatchNorm running statistics are copied from G."""
    ema, decay = state.generator_ema, state.cfg.train.ema_decay
    if ema is None:
        return
    decay = 0.0 if state.step < state.cfg.train.ema_start else decay
    for p_ema, p in zip(ema.parameters(), state.generator.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), state.generator.buffers(), strict=True):
        b_ema.copy_(b)


class SignalGuard:
    """First SIGINT/SIGTERM: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}: stopping without a checkpoint")
        self.received = signum
        tqdm.write(f"{signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
                   f"(send it again to stop at once)")

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class RunWriter:
    """Files of one run: config.yaml, metrics.jsonl, samples/, checkpoints/ (+ TensorBoard when installed)."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.samples_dir = run_dir / "samples"
        self.metrics_path = run_dir / "metrics.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is the optional extra sngan[tensorboard]
            self.tensorboard = None

    def log(self, record: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def save(self, state: TrainState, keep: int) -> Path:
        check_finite_weights(state)
        path = ckpt.save_checkpoint(state.snapshot(), ckpt.checkpoint_path(self.ckpt_dir, state.step))
        ckpt.prune_checkpoints(self.ckpt_dir, keep)
        return path

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def check_finite_weights(state: TrainState) -> None:
    for name, net in (("generator", state.generator), ("discriminator", state.discriminator)):
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise TrainingDiverged(f"non-finite {name} weights at step {state.step}; no checkpoint written "
                                   f"(the last good one is kept): lower optim.lr or check the data")


def sample_grid(state: TrainState, fixed: tuple[torch.Tensor, torch.Tensor | None], path: Path) -> Path:
    net = state.generator_ema if state.generator_ema is not None else state.generator
    return save_grid(generate(net, *fixed), path)


def train(cfg: Config, run_dir: str | Path, resume: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None, log: Callable[[str], None] = tqdm.write) -> Path:
    """Train (or continue) a run and return the path of its last checkpoint.

    Args:
        cfg: validated config.
        run_dir: the run directory (created; must not hold checkpoints unless resuming).
        resume: a checkpoint to continue from (same model config), or None for a fresh run.
        progress: show a tqdm progress bar.
        stop_after: stop (with a checkpoint) after this many completed G iterations (tests, schedulers).
        log: where one-line messages go.
    """
    run_dir = Path(run_dir)
    saved = ckpt.load_checkpoint(resume) if resume is not None else None
    if saved is not None:
        changed = models_differ(saved["config"]["model"], cfg.to_dict()["model"])
        if changed:
            raise SnganError(f"cannot resume {resume}: the config changes the model ({', '.join(changed)}); "
                             f"resume with the checkpoint's model settings")
    else:
        check_fresh(run_dir)
    device = resolve_device(cfg.train.device)
    state = build_state(cfg, device, log)
    if saved is not None:
        state.restore(saved)
        log(f"resumed from {resume} at step {state.step}")
    writer = RunWriter(run_dir, cfg)
    log(f"run directory: {run_dir} | device {device} | G {count_parameters(state.generator):,} params, "
        f"D {count_parameters(state.discriminator):,} params")
    d_loss_fn, g_loss_fn = get_losses(cfg.loss.type)
    fixed = latents(cfg.train.num_samples, cfg.model.z_dim, cfg.model.num_classes, seed=cfg.train.seed)
    total, t = cfg.train.iterations, cfg.train
    last_path: Path | None = None
    window = {"d_loss": torch.zeros((), device=device), "g_loss": torch.zeros((), device=device), "n": 0}
    bar = tqdm(total=total, initial=state.step, disable=not progress, dynamic_ncols=True, desc="train")
    tick = time.perf_counter()
    try:
        with SignalGuard() as signals:
            while state.step < total:
                lr = lr_at(cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.lr_decay_start, total, state.step)
                for opt in (state.opt_g, state.opt_d):
                    for group in opt.param_groups:
                        group["lr"] = lr
                g_loss = g_step(state, g_loss_fn)
                d_loss = torch.stack([d_step(state, d_loss_fn) for _ in range(t.n_dis)]).mean()
                state.step += 1
                ema_update(state)
                window["d_loss"] += d_loss
                window["g_loss"] += g_loss
                window["n"] += 1
                bar.update(1)
                end = state.step == total or signals.received is not None or state.step == stop_after
                if state.step % t.log_every == 0 or end:
                    now = time.perf_counter()
                    record = {"step": state.step, "d_loss": (window["d_loss"] / window["n"]).item(),
                              "g_loss": (window["g_loss"] / window["n"]).item(), "lr": lr,
                              "it_per_s": window["n"] / max(now - tick, 1e-9), "time": time.time()}
                    if not (math.isfinite(record["d_loss"]) and math.isfinite(record["g_loss"])):
                        raise TrainingDiverged(f"non-finite loss between steps {state.step - window['n'] + 1} and "
                                               f"{state.step} (d_loss {record['d_loss']}, g_loss "
                                               f"{record['g_loss']}); no checkpoint written after it: lower "
                                               f"optim.lr or check the data")
                    writer.log(record)
                    bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}", lr=f"{lr:.2e}")
                    window = {"d_loss": torch.zeros((), device=device), "g_loss": torch.zeros((), device=device),
                              "n": 0}
                    tick = now
                if (t.sample_every and state.step % t.sample_every == 0) or end:
                    sample_grid(state, fixed, writer.samples_dir / f"step-{state.step:07d}.png")
                if (t.ckpt_every and state.step % t.ckpt_every == 0) or end:
                    last_path = writer.save(state, t.keep_checkpoints)
                if signals.received is not None:
                    name = signal.Signals(signals.received).name
                    raise TrainingStopped(f"stopped by {name} at step {state.step}; checkpoint {last_path}; "
                                          f"continue with: sngan train --out {run_dir} --resume auto")
                if state.step == stop_after:
                    break
    finally:
        bar.close()
        writer.close()
        state.batches.close()
    if last_path is None:  # resumed a finished run: nothing to do
        last_path = ckpt.list_checkpoints(writer.ckpt_dir)[-1]
    log(f"done: step {state.step}, checkpoint {last_path}")
    return last_path


def dry_run_summary(cfg: Config) -> str:
    """The resolved config and the parameter counts, as printed by `sngan train --dry-run`."""
    g, d = build_generator(cfg.model), build_discriminator(cfg.model)
    return (f"{to_yaml(cfg)}generator parameters: {count_parameters(g)}\n"
            f"discriminator parameters: {count_parameters(d)}")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Records of a run's metrics.jsonl, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
