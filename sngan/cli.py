"""The `sngan` command line: parse options -> config -> call one function. No maths here.

Exit codes (docs/README.md, "Exit codes"): 0 done; 1 bad input or a failure, as one line `error: ...` on stderr;
2 a usage error (unknown option, missing or out-of-range option value), also one line; 130 interrupted with nothing
saved (Ctrl-C outside training, or a second signal during training before the stop checkpoint was written); 143
training stopped by a signal after writing a checkpoint (whatever signals follow it), or SIGTERM/SIGHUP/SIGUSR2
outside training. No path prints a traceback for a problem the user can fix.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeGuard, cast

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from sngan import __version__
from sngan.errors import SnganError

EXIT_INTERRUPTED = 130  # stopped at once: nothing saved since the last checkpoint
EXIT_STOPPED = 143  # stopped by a signal after writing a checkpoint
OOM_TEXTS = ("can't allocate memory", "not enough memory", "out of memory")  # torch's CPU allocator, CUDA, MPS


def _world_size() -> int:
    """The number of processes of this job as torchrun announces it (1 without torchrun); torch is not needed."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _error_line(message: str) -> str:
    rank = os.environ.get("RANK") if _world_size() > 1 else None
    return f"error{f' (rank {rank})' if rank else ''}: {' '.join(message.split())}"


class ClickError(Protocol):
    """click's documented interface of its errors for the user (usage errors add `ctx`)."""

    exit_code: int

    def format_message(self) -> str: ...


def _click_error(exc: BaseException) -> TypeGuard[ClickError]:
    """Whether `exc` is one of click's errors for the user (ClickException or a child), told by its documented surface.

    Duck typing on purpose: typer >= 0.29 vendors click in a private module and exports only `BadParameter` of its
    exception classes, while older typer raises click's own classes. Both carry click's documented interface
    (`exit_code`, `format_message()`; usage errors add `ctx`), so this check needs neither a private import nor an
    upper bound on typer.
    """
    return isinstance(getattr(exc, "exit_code", None), int) and callable(getattr(exc, "format_message", None))


class OneLineGroup(TyperGroup):
    """Typer's group with usage errors as one `error: ...` line (exit 2) instead of a boxed help excerpt."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except typer.Abort:
            typer.echo("interrupted", err=True)
            code = EXIT_INTERRUPTED
        except Exception as exc:
            if not _click_error(exc):
                raise
            if hasattr(exc, "ctx"):  # a usage error: point at the command's --help
                ctx = getattr(exc, "ctx", None)
                command = f"sngan {ctx.command.name} --help" if ctx and ctx.parent else "sngan --help"
                typer.echo(f"{_error_line(exc.format_message())} (see {command})", err=True)
            else:
                typer.echo(_error_line(exc.format_message()), err=True)
            code = exc.exit_code
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=OneLineGroup, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)  # click's plain help: long option names wrap at 80 columns, never cut


@app.callback(invoke_without_command=True)  # runs without a command too: `sngan --version`, `sngan`
def _root(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    """Train, evaluate and sample Spectrally Normalized GANs."""
    if version:
        typer.echo(f"sngan {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # `sngan` alone: the help on stderr, exit 2 (a usage error)
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected failure into one line on stderr and its exit code (see the module docstring)."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        from sngan.errors import TrainingStopped
        from sngan.progress import warning_lines

        try:
            with warning_lines(lambda line: typer.echo(line, err=True)):  # each when it happens; the error line last
                return command(*args, **kwargs)
        except TrainingStopped as exc:
            if str(exc):  # under torchrun rank 0 alone says it
                typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_STOPPED) from None
        except SnganError as exc:
            typer.echo(_error_line(str(exc)), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            from sngan.errors import Terminated

            if isinstance(exc, Terminated):
                typer.echo(f"stopped by {exc}: what this command had not finished was not written", err=True)
                raise typer.Exit(EXIT_STOPPED) from None
            typer.echo(f"interrupted{f': {exc}' if str(exc) else ''}", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # a file-system failure not already worded by sngan.io
            typer.echo(_error_line(str(exc)), err=True)
            raise typer.Exit(1) from None
        except (MemoryError, RuntimeError) as exc:
            if not isinstance(exc, MemoryError) and type(exc).__name__ != "OutOfMemoryError" and \
                    not any(text in str(exc) for text in OOM_TEXTS):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            if isinstance(exc, MemoryError) and "lower" in first:  # sngan's own, naming what to lower
                typer.echo(_error_line(f"out of memory: {first}"), err=True)
                raise typer.Exit(1) from None
            typer.echo(_error_line(f"out of memory ({first or type(exc).__name__}): lower the batch size, the "
                                   f"number of images asked for, or the model width"), err=True)
            raise typer.Exit(1) from None

    return checked


@app.command()
@one_line_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                      "(repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<config-name>-NNN).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue a run: 'auto' (newest checkpoint of --out) or "
                                                  "a checkpoint path.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config, parameter counts and "
                                          "weights' memory, then check the data; write nothing.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train an SN-GAN from a YAML config (or continue one with --resume)."""
    if config is not None and _world_size() == 1:
        # A wrong path or key fails here in a fraction of a second, before torch loads. Under torchrun the check
        # waits for launch, which makes every rank agree on a failure (a rank must not exit before joining).
        from sngan.config import load_config

        load_config(config, set_ or [])
    if dry_run:
        from sngan.train.launch import dry_run as preview

        preview(config, set_ or [], out, resume, typer.echo)  # the data's problem, if any, is the last line
        return
    from sngan.train.launch import launch

    launch(config, set_ or [], out, resume, progress)


@app.command()
@one_line_errors
def sample(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint written by sngan train.")],
    out: Annotated[Path, typer.Option(help="Output: grid .png, .npz, folder (no extension), or with "
                                           "--interpolate a .png strip + .gif.")],
    format_: Annotated[str | None, typer.Option("--format", metavar="FORMAT",
                                                help="grid, folder, npz or gif (default: from --out).")] = None,
    num: Annotated[int | None, typer.Option(min=1, help="Images (default 64); per class with --classes "
                                                        "(default 10); paths with --interpolate (default 8).")
                   ] = None,
    seed: Annotated[int, typer.Option(help="Latent seed (same seed, same images, same bytes).")] = 0,
    nrow: Annotated[int | None, typer.Option(min=1, help="Images per grid row (default ~sqrt(num)); paths per "
                                                         "GIF frame row.")] = None,
    class_: Annotated[str | None, typer.Option("--class", metavar="K",
                                               help="Conditional models: every image of class K (a class name "
                                                    "such as cat, or an index).")] = None,
    classes: Annotated[str | None, typer.Option(metavar="LIST", help="Conditional models: 'cat,dog', '0,3,7' or "
                                                "'all'; one grid row per class, or with --interpolate a path "
                                                "through them.")] = None,
    interpolate: Annotated[int | None, typer.Option(metavar="STEPS", help="Write interpolations with STEPS "
                                                    "frames (PNG strip + GIF): between seeds, or between --classes.")
                           ] = None,
    interp: Annotated[str | None, typer.Option(metavar="METHOD",
                                               help="Latent interpolation: slerp (default) or lerp.")] = None,
    end_seed: Annotated[int | None, typer.Option(help="Seed of the latent interpolation's end points "
                                                      "(default seed + 1).")] = None,
    ema: Annotated[bool | None, typer.Option("--ema/--no-ema", help="Use the EMA generator (default: when "
                                                "the checkpoint has one).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Report progress (a bar on a terminal, a "
                                                          "line every 10 s elsewhere).")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files; replace the sample "
                                                        "PNGs of a non-empty folder.")] = False,
    seeds: Annotated[str | None, typer.Option(metavar="LIST", help="One image per seed: 0-35 or 1,5,10-12.")] = None,
    truncation: Annotated[float | None, typer.Option(metavar="T", help="Redraw latent entries "
                                                     "with |z| > T (truncation trick; not the paper's). BatchNorm "
                                                     "generators fade to grey below about 1.5 (docs/sample.md); "
                                                     "1.5-2 is sane.")] = None,
    flat: Annotated[bool, typer.Option("--flat", help="Conditional folders: one folder, class in the name.")] = False,
    scale: Annotated[int | None, typer.Option(min=1, max=16, help="Enlarge the interpolation strip and GIF N "
                                              "times (default: strip 1, GIF the least that makes it >= 256 px wide).")
                     ] = None,
) -> None:
    """Generate images from a checkpoint: a grid, a folder of PNGs, an .npz, or interpolations."""
    from sngan.checkpoint import class_names
    from sngan.distributed import resolve_device
    from sngan.sample.command import SampleRequest, export
    from sngan.sample.generate import check_truncation, load_generator

    check_truncation(truncation)  # before the checkpoint is read

    request = SampleRequest(out=out, fmt=format_, num=num, seed=seed, nrow=nrow, class_index=class_,
                            classes=classes, interpolate=interpolate, method=interp, end_seed=end_seed,
                            batch_size=batch_size, progress=progress, force=force, seeds=seeds,
                            truncation=truncation, flat=flat, scale=scale)
    generator, state = load_generator(ckpt, ema, resolve_device(device))
    num_classes = cast(int, generator.num_classes)  # an int attribute: nn.Module types attributes as tensors
    paths = export(generator, request, class_names(state, num_classes))
    if out.is_dir():
        typer.echo(f"wrote {len(paths)} images to {out}")
    else:
        typer.echo("\n".join(f"wrote {path}" for path in paths))


@app.command()
@one_line_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by sngan train.")],
    out: Annotated[Path | None, typer.Option(help="Output .png, .pdf or .svg (default RUN_DIR/report.png, "
                                                  "replaced on each report).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
) -> None:
    """Draw a run's loss curves, metric curves and newest sample grid into one PNG."""
    from sngan.errors import ReportError
    from sngan.io import check_new_output, publishing
    from sngan.report.page import write_report
    from sngan.study.figures import study_folder_note
    from sngan.train.rundir import read_run_id

    if not run_dir.is_dir():
        raise ReportError(f"run directory '{run_dir}' not found")
    own = out is None and read_run_id(run_dir) is not None  # RUN/report.png is the report's own file in a run folder
    if study_folder_note(run_dir):
        raise ReportError(study_folder_note(run_dir))
    if out is None and not own:
        raise ReportError(f"'{run_dir}' is not a run folder sngan made (no .sngan-run marker): give --out for the "
                          f"report")
    target = out if out is not None else run_dir / "report.png"
    check_new_output(target, force or own)
    with publishing(target, force or own) as stage:
        write_report(run_dir, stage)
    typer.echo(f"wrote {target}")


InceptionInput = Annotated[str, typer.Option(help="How images are resized to 299 and scaled for the Inception: tf1 "
                                           "(the TF inception-2015-12-05 graph's ResizeBilinear and (x-128)/128, as "
                                           "the paper's IS/FID code) or pytorch-fid (F.interpolate, x/127.5-1).")]

FdNetwork = Annotated[str, typer.Option(help="Features of the Fréchet distance: inception (FID) or dinov2_vitl14 "
                                        "(FD_DINOv2, Stein et al. 2023, from torch hub; IS stays on the "
                                        "Inception).")]
Dinov2Repo = Annotated[Path | None, typer.Option(help="A local checkout of facebookresearch/dinov2 (default: the "
                                                 "torch hub cache, then a download).")]


@app.command()
@one_line_errors
def stats(
    out: Annotated[Path, typer.Option(help="Output .npz (keys mu, sigma, protocol).")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config naming the dataset (data "
                                                "section) and resolution (or give --images).")] = None,
    images: Annotated[Path | None, typer.Option(help="Statistics of these images instead: a folder (recursive, "
                                                "any Pillow format) or an .npz with arr_0 or x (N, H, W, 3) "
                                                "uint8.")] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split (default: data.split of the config).")] = None,
    num: Annotated[int | None, typer.Option(min=2, max=10_000_000, help="Use NUM images, a class-stratified "
                                                "sample (docs/eval.md; default all).")]
    = None,
    inception_weights: Annotated[Path | None, typer.Option(help="pt_inception-2015-12-05-6726825d.pth (default: "
                                                           "torch hub cache, then download).")] = None,
    inception_input: InceptionInput = "tf1",
    fd_network: FdNetwork = "inception",
    dinov2_repo: Dinov2Repo = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per Inception pass.")] = 250,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    features: Annotated[bool, typer.Option("--features", help="Also store the real features and labels (for "
                                           "eval --metrics kid,prdc,intra_fid with --stats).")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value "
                                                      "(repeatable).")] = None,
) -> None:
    """Write FID reference statistics (mu, sigma + protocol record) of a config's real images (also kept in the
    cache) or of a folder or npz of images (--images)."""
    from sngan.evaluation.reference import stats_command

    stats_command(config, out, split=split, num=num, weights=inception_weights, batch_size=batch_size,
                  device=device, force=force, log=typer.echo, features=features, overrides=tuple(set_ or ()),
                  inception_input=inception_input, images=images, fd_network=fd_network, dinov2_repo=dinov2_repo)


class RegisteredMetricsHelp(TyperCommand):
    """`sngan eval`'s command: its --help names the metrics `sngan.metrics.extra.EXTRA` holds, read when the help is
    shown (the registry's module loads torch, which no other `sngan` start should wait for)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # click's Context and HelpFormatter
        from sngan.metrics.extra import EXTRA

        templates = {p: p.help for p in self.params if isinstance(p, TyperOption) and p.help and "{metrics}" in p.help}
        for param, template in templates.items():
            param.help = str(template).replace("{metrics}", ",".join(["is", "fid", *EXTRA]))
        try:
            super().format_help(ctx, formatter)
        finally:  # the next help shows the registry as it is then
            for param, template in templates.items():
                param.help = template


@app.command(name="eval", cls=RegisteredMetricsHelp)
@one_line_errors
def eval_(
    ckpt: Annotated[Path | None, typer.Option(help="Checkpoint written by sngan train (or give --images).")]
    = None,
    images: Annotated[Path | None, typer.Option(help="Score these images instead: a folder (recursive, any "
                                                "Pillow format) or an .npz with arr_0 or x (N, H, W, 3) uint8; "
                                                "needs --stats or --ref.")] = None,
    ref: Annotated[Path | None, typer.Option(help="With --images: the real images (a folder or an .npz) to "
                                             "compare with, instead of --stats.")] = None,
    num_real: Annotated[int | None, typer.Option(min=2, max=10_000_000, help="Real images: N of the split, a "
                                                 "class-stratified sample (default: the protocol's).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key of the checkpoint's config for "
                                                      "the reference statistics, e.g. data.root=... "
                                                      "(repeatable).")] = None,
    progress: Annotated[bool, typer.Option(help="Report long passes (a bar on a terminal, a line every 10 s "
                                           "elsewhere).")] = True,
    protocol: Annotated[str, typer.Option(help="standard: IS 50k/10 splits, FID 50k vs the whole train split; "
                                          "paper: SN-GAN App. B.1 (IS 10x5000, FID 5000 vs 10000 real); quick "
                                          "(ours): IS 5000 in 10 splits of 500, FID 5000 vs the whole split.")]
    = "standard",
    num_samples: Annotated[int | None, typer.Option(min=2, max=1_000_000, help="Generated images (default: the "
                                                    "protocol's).")]
    = None,
    splits: Annotated[int | None, typer.Option(min=1, max=1000, help="IS splits (default: the protocol's, 10).")
                      ] = None,
    stats: Annotated[Path | None, typer.Option(help="Reference statistics .npz (default: the cache, built from "
                                               "the checkpoint's dataset when absent).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per generator/Inception pass.")] = 250,
    seed: Annotated[int, typer.Option(min=0, max=2 ** 63 - 1, help="Latent seed.")] = 0,
    ema: Annotated[bool | None, typer.Option("--ema/--no-ema", help="Use the EMA generator (default: when "
                                                "the checkpoint has one).")] = None,
    inception_weights: Annotated[Path | None, typer.Option(help="pt_inception-2015-12-05-6726825d.pth (default: "
                                                           "torch hub cache, then download).")] = None,
    inception_input: InceptionInput = "tf1",
    fd_network: FdNetwork = "inception",
    dinov2_repo: Dinov2Repo = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Append the result and its protocol as one "
                                                  "JSON line to this file.")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated, from {metrics}: IS and FID always, the others "
                                         "(sngan.metrics.extra's registry) on the FID's features.")]
    = "is,fid",
    truncation: Annotated[float | None, typer.Option(metavar="T", help="Redraw |z| > T (not the paper's).")] = None,
) -> None:
    """Inception Score and FID (and optionally KID, PRDC, intra-FID) of a checkpoint, with their protocol."""
    from sngan.evaluation.command import evaluate_command

    evaluate_command(ckpt, protocol, num_samples=num_samples, splits=splits, stats=stats, batch_size=batch_size,
                     seed=seed, ema=ema, weights=inception_weights, device=device, json_out=json_out, log=typer.echo,
                     metrics=metrics, truncation=truncation, images=images, ref=ref, num_real=num_real,
                     overrides=tuple(set_ or ()), progress=progress, inception_input=inception_input,
                     fd_network=fd_network, dinov2_repo=dinov2_repo)


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
    from sngan.data.cache import prepare_command

    prepare_command(config, set_ or [], progress, typer.echo)  # sngan.progress: a bar or plain lines


@app.command()
@one_line_errors
def inspect(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint written by sngan train.")],
    lipschitz: Annotated[int, typer.Option(min=0, metavar="N", help="Also estimate a Lipschitz lower bound: the "
                                           "largest ||grad_x D(x)|| over N real and N generated images.")] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write the spectra figure (squared singular values over the "
                                              "largest, one curve per layer; .png, .pdf or .svg).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write everything as JSON.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace existing --plot / --json files.")] = False,
    compare: Annotated[list[Path] | None, typer.Option(metavar="CKPT", help="More --plot panels (SN vs WN).")] = None,
) -> None:
    """Spectral norms of a checkpoint's discriminator: estimate vs exact per layer, conv operator norms, bounds."""
    from sngan.inspect.command import run_inspect

    run_inspect(ckpt, lipschitz, plot, json_out, device, typer.echo, force, compare)


@app.command()
@one_line_errors
def study(
    plan: Annotated[Path, typer.Option(help="Study plan YAML (configs/study/): base config, methods x settings, "
                                            "seeds, evaluation.")],
    out: Annotated[Path | None, typer.Option(help="Study folder (default: the plan's 'out').")] = None,
    jobs: Annotated[int, typer.Option(min=1, max=1024, help="Runs at a time, each in its own process (one device "
                                      "each from CUDA_VISIBLE_DEVICES when there are GPUs).")] = 1,
    only: Annotated[list[str] | None, typer.Option(metavar="RUN", help="Run just this run (VARIANT-sSEED, see "
                                                   "--list; repeat for several); several such processes may share "
                                                   "one study folder.")] = None,
    only_index: Annotated[int | None, typer.Option(min=0, metavar="I", help="Run just the I-th run of --list "
                                                   "(from 0: a job array's $SLURM_ARRAY_TASK_ID).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="Print the run names, one a line, and exit.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Print which runs are done, running, failed or "
                                         "pending, and exit.")] = False,
    executor: Annotated[str | None, typer.Option(metavar="KIND", help="Submit the runs not yet done as one job "
                                                 "array through submitit: slurm, local or debug (pip install "
                                                 "'sngan[slurm]').")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --executor: wait for the jobs, then write the "
                                       "table.")] = False,
    partition: Annotated[str | None, typer.Option(help="--executor slurm: partition.")] = None,
    time_min: Annotated[int | None, typer.Option(min=1, help="--executor: minutes per task (a longer run "
                                                 "checkpoints and requeues itself).")] = None,
    gpus_per_run: Annotated[int | None, typer.Option(min=0, help="--executor: GPUs per run.")] = None,
    cpus_per_run: Annotated[int | None, typer.Option(min=1, help="--executor: CPUs per run.")] = None,
    mem_gb: Annotated[float | None, typer.Option(min=0.001, help="--executor: memory per run (GB).")] = None,
    array_parallelism: Annotated[int | None, typer.Option(min=1, help="--executor: tasks running at once.")
                                 ] = None,
    sbatch: Annotated[list[str] | None, typer.Option(metavar="--KEY=VALUE", help="--executor slurm: an extra "
                                                     "sbatch option (repeatable).")] = None,
    table: Annotated[bool, typer.Option(hidden=True, help="Write the table after the runs (--jobs children: "
                                                          "no).")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Print every run's differences from the base config and its cost "
                                               "in steps; train and write nothing.")] = False,
) -> None:
    """Run every variant of a study plan (skipping finished runs, resuming interrupted ones); write the table
    (study.md, study.jsonl) and the figures. On a cluster: --executor slurm, or a job array of --only-index."""
    from sngan.errors import StudyError
    from sngan.study.plan import load_plan, run_name

    loaded = load_plan(plan)
    names = [run_name(v, s) for v, s in loaded.runs()]
    if only_index is not None:
        if only:
            raise StudyError("give --only or --only-index, not both")
        if only_index >= len(names):
            raise StudyError(f"--only-index {only_index}: the plan has {len(names)} runs (0-{len(names) - 1})")
        only = [names[only_index]]
    if wait and executor is None:
        raise StudyError("--wait waits for the jobs of --executor: give --executor slurm|local|debug, or leave "
                         "--wait out (without --executor the runs are trained here, and the command returns when "
                         "they end)")
    if list_:
        typer.echo("\n".join(names))
        return
    if dry_run:
        from sngan.study.preview import describe

        typer.echo(describe(loaded))
        return
    from sngan.study import run as study_run

    folder = Path(out) if out is not None else loaded.out
    if status:
        typer.echo("\n".join(study_run.status_lines(loaded, folder)))
        return
    if executor is not None:
        study_run.submit_study(loaded, folder, executor, wait, typer.echo, partition=partition, time_min=time_min,
                               gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run, mem_gb=mem_gb,
                               array_parallelism=array_parallelism, sbatch=tuple(sbatch or ()))
        return
    study_run.run_study(loaded, folder, jobs, only, progress, typer.echo, table=table)
    typer.echo(f"study folder: {folder}")


def _terminate(signum: int, frame: Any) -> None:
    from sngan.errors import Terminated

    raise Terminated(signal.Signals(signum).name)


def main() -> None:
    """Console entry point. SIGTERM, SIGHUP and SIGUSR2 (Slurm's warning before a time limit) become one line and
    exit 143 (training takes them over while it runs, to checkpoint first)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2):
        signal.signal(sig, _terminate)
    app()
