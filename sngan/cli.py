"""The `sngan` command line: parse options -> config -> call one function. No maths here.

Every user-facing problem is a `SnganError` and becomes one line on stderr with exit code 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from sngan.config import SnganError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train, evaluate and sample Spectrally Normalized GANs.")


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SnganError into `error: ...` on stderr and exit 1 (a stopped run exits 143 with its resume hint)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sngan.training import TrainingStopped

        try:
            return command(*args, **kwargs)
        except TrainingStopped as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(143) from None
        except SnganError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _resolve_run(config: Path | None, overrides: list[str], out: Path | None,
                 resume: str | None) -> tuple[object, Path, Path | None]:
    """(config, run directory, checkpoint to resume or None) from the train options."""
    from sngan.checkpoint import list_checkpoints, load_checkpoint
    from sngan.config import apply_overrides, from_dict, load_config
    from sngan.rundir import latest_run_dir, next_run_dir

    if config is None and resume is None:
        raise SnganError("--config FILE is required (or --resume to continue a run)")
    name = config.stem if config is not None else None
    ckpt_path: Path | None = None
    if resume == "auto":
        run_dir = out or (latest_run_dir(name) if name else None)
        if run_dir is None:
            raise SnganError("--resume auto needs --out RUN_DIR (or --config with an earlier run under runs/)")
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise SnganError(f"--resume auto: no checkpoint in '{run_dir / 'checkpoints'}'")
        ckpt_path = found[-1]
    elif resume is not None:
        ckpt_path = Path(resume)
        run_dir = out or (ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent)
    else:
        run_dir = out or next_run_dir(name)
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        saved = load_checkpoint(ckpt_path)["config"]
        cfg = from_dict(apply_overrides(saved, overrides))
    return cfg, run_dir, ckpt_path


@app.command()
@one_line_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                      "(repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<config-name>-NNN).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue a run: 'auto' (newest checkpoint of --out) or "
                                                  "a checkpoint path.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and parameter counts; "
                                          "write nothing.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train an SN-GAN from a YAML config (or continue one with --resume)."""
    from sngan.training import dry_run_summary
    from sngan.training import train as run_training

    cfg, run_dir, ckpt_path = _resolve_run(config, set_ or [], out, resume)
    if dry_run:
        typer.echo(dry_run_summary(cfg))
        return
    run_training(cfg, run_dir, resume=ckpt_path, progress=progress)


@app.command()
@one_line_errors
def sample(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint written by sngan train.")],
    out: Annotated[Path, typer.Option(help="Output PNG grid.")],
    num: Annotated[int, typer.Option(min=1, help="Number of images.")] = 64,
    seed: Annotated[int, typer.Option(help="Latent seed (same seed, same images).")] = 0,
    nrow: Annotated[int | None, typer.Option(min=1, help="Images per grid row (default ~sqrt(num)).")] = None,
    ema: Annotated[bool | None, typer.Option("--ema/--no-ema", help="Use the EMA generator (default: when "
                                                "the checkpoint has one).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write a grid of generated images from a checkpoint."""
    from sngan.sampling import generate, latents, load_generator, save_grid
    from sngan.training import resolve_device

    generator, _ = load_generator(ckpt, ema, resolve_device(device))
    z, y = latents(num, generator.z_dim, generator.num_classes, seed)
    path = save_grid(generate(generator, z, y, batch_size), out, nrow)
    typer.echo(f"wrote {path}")


@app.command()
@one_line_errors
def prepare(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file (its data section and "
                                         "model.resolution are used).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                      "(repeatable).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar while packing.")] = True,
) -> None:
    """Pack the config's dataset into its uint8 cache (reused when current) and print its summary."""
    from sngan.config import load_config
    from sngan.data import load_images

    cfg = load_config(config, set_ or [])
    image_set = load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, progress=progress, log=typer.echo)
    typer.echo(image_set.summary())


def main() -> None:
    """Console entry point."""
    app()
