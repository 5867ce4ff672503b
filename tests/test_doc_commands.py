"""Every shell command in the README and docs/ is run by a test, or its block says why not.

A command is a line of a ```bash, ```sh, ```shell or ```console block (a `$ ` prompt dropped, continuation lines joined,
comments and `VAR=value` lines dropped); a command line anywhere else (prose, another block) fails. It is
- run here, in-process, as written (cheap ones: dry runs, listings, help), in `RUN_HERE`;
- or run by a named test in `RUN_BY`, whose source uses the same command and every option the docs line shows
  (checked here, so a renamed option or a deleted test fails);
- or its block is preceded by `<!-- not run by tests: why -->` (network installs, several machines, Slurm, the
  shared CIFAR-10 copy, GPU-sized jobs).
"""

import ast
import re
import shlex

import pytest
from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- not run by tests: (.+?) -->")
SHELL_FENCES = {"```bash", "```sh", "```shell", "```console"}
# A line that reads as a command: what a reader would paste into a shell.
SUBCOMMANDS = ("train", "eval", "sample", "study", "inspect", "report", "stats", "prepare")
COMMAND_LINE = re.compile(rf"^\s*(\$ )?(sngan( --help| ({'|'.join(SUBCOMMANDS)})\b)|torchrun |python3? |\.venv/)")


def doc_commands(pages: list = PAGES) -> list[tuple[str, str | None]]:
    """(command, why-not or None) for every command of every shell block of `pages`."""
    found = []
    for page in pages:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() not in SHELL_FENCES:
                i += 1
                continue
            mark = MARK.search(lines[i - 1]) if i else None
            i += 1
            command = ""
            while lines[i].strip() != "```":
                text = lines[i].strip().removeprefix("$ ")
                line = text.split(" #", 1)[0].rstrip() if not text.startswith("#") else ""
                command += line.rstrip("\\").strip() + " "
                if not line.endswith("\\"):
                    command = " ".join(command.split())
                    if command and not re.fullmatch(r"[A-Z_]+=\S+", command):
                        found.append((command, mark.group(1) if mark else None))
                    command = ""
                i += 1
            i += 1
    return found


# Cheap as written: run here, in the repository, and checked for what the docs say they print.
RUN_HERE = {
    "sngan train --config configs/cifar10_resnet.yaml --dry-run": "generator parameters: 4276739",
    "sngan train --config configs/cifar10_cnn.yaml --set model.d_norm=none --set loss.type=wasserstein "
    "--set loss.gp_weight=10 --dry-run": "gp_weight: 10",
    "sngan study --plan configs/study/figure1_cifar10.yaml --list | wc -l": "48 lines",
    "sngan study --plan configs/study/figure1_cifar10.yaml --status": "48 pending",
}

E2E = "tests/test_evaluation.py::test_stats_and_eval_end_to_end_match_pytorch_fid_features"
IMAGES = "tests/test_eval_images.py::test_folder_npz_and_checkpoint_give_the_same_is_and_fid"
RESUME = "tests/test_cluster.py::test_the_same_command_starts_a_run_then_continues_it"
TRAIN = "tests/test_cli.py::test_train_then_sample_grid"
TORCHRUN = "tests/test_distributed.py::test_torchrun_two_processes_write_one_checkpoint_log_and_per_rank_random_streams"
STUDY = "tests/test_study.py::test_study_runs_then_skips_finished_runs_and_resumes_interrupted_ones"
JOBS = ("tests/test_parallel_study.py::test_jobs_2_finishes_both_runs_lists_both_and_writes_the_checkpoints_jobs_1_"
        "writes")
SAMPLING = "tests/test_sampling.py::"
# The same command and options, at test size (tiny configs and checkpoints; a paper config where it is cheap).
FD_DINO = "tests/test_fd_dinov2.py::"
RUN_BY = {
    "sngan eval --images fakes.npz --ref real/ --fd-network dinov2_vitl14 --json evals.jsonl":
        FD_DINO + "test_fd_dinov2_is_named_recorded_and_equals_the_distance_of_features_computed_here",
    "sngan stats --images real/ --out real-dinov2.npz --fd-network dinov2_vitl14 --dinov2-repo dinov2/":
        FD_DINO + "test_dinov2_statistics_score_the_same_and_never_mix_with_the_inceptions",
    "sngan eval --images fakes.npz --stats real-dinov2.npz --fd-network dinov2_vitl14 --dinov2-repo dinov2/":
        FD_DINO + "test_dinov2_statistics_score_the_same_and_never_mix_with_the_inceptions",
    "sngan eval --ckpt CKPT --protocol quick --fd-network dinov2_vitl14":
        FD_DINO + "test_a_checkpoint_scores_fd_dinov2_against_cached_dinov2_statistics",
    "sngan train --config configs/cifar10_resnet.yaml --out runs/c10 --resume auto": RESUME,
    "sngan eval --ckpt runs/c10/checkpoints/ckpt-0050000.pt --protocol paper":
        "tests/test_evaluation.py::test_training_time_scores_equal_sngan_eval_of_the_same_checkpoint_and_protocol",
    "sngan sample --ckpt runs/c10/checkpoints/ckpt-0050000.pt --out fakes.npz --num 10000":
        SAMPLING + "test_npz_has_stated_dtype_and_shape",
    "sngan study --plan configs/study/figure1_cifar10.yaml --dry-run":
        "tests/test_study_paper.py::test_dry_run_prints_each_run_and_its_differences_and_writes_nothing",
    "sngan inspect --ckpt runs/c10/checkpoints/ckpt-0050000.pt":
        "tests/test_inspect.py::test_inspect_command_prints_table_and_writes_plot_and_json",
    "sngan report runs/c10": "tests/test_report.py::test_report_on_a_finished_run_writes_its_picture",
    "sngan stats --config configs/cifar10_resnet.yaml --out cifar10-train.npz": E2E,
    "sngan prepare --config configs/cifar10_resnet.yaml":
        "tests/test_data_cache.py::test_prepare_command_packs_then_reuses_and_reports_errors",
    "torchrun --standalone --nproc_per_node=4 -m sngan train --config configs/imagenet128_projection.yaml": TORCHRUN,
    "torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST0:29500 --rdzv_id in128 "
    "--max-restarts 3 -m sngan train --config configs/imagenet128_projection.yaml --out runs/in128 --resume auto":
        "tests/test_cluster.py::test_a_worker_killed_under_max_restarts_is_continued_by_the_restarted_workers_to_the_"
        "same_weights",
    "sngan study --plan configs/study/figure1_cifar10.yaml": STUDY,
    "sngan eval --ckpt runs/cifar10_resnet-000/checkpoints/ckpt-0050000.pt": E2E,
    "sngan eval --ckpt CKPT --protocol paper --json evals.jsonl":
        "tests/test_evaluation.py::test_training_time_scores_equal_sngan_eval_of_the_same_checkpoint_and_protocol",
    "sngan eval --ckpt CKPT --num-samples 10000 --no-ema --seed 1 --stats cifar10-train.npz": E2E,
    "sngan stats --config configs/cifar10_resnet.yaml --split test --out cifar10-test.npz": E2E,
    "sngan sample --ckpt CKPT --out samples.npz --num 5000 --seed 0": IMAGES,
    "sngan eval --images samples.npz --protocol quick --stats cifar10-train.npz": IMAGES,
    "sngan eval --images my_folder/ --ref other_folder/ --protocol quick --num-samples 2000": IMAGES,
    "sngan inspect --ckpt runs/demo-000/checkpoints/ckpt-0000900.pt --lipschitz 16 --plot spectra.png --json "
    "spectra.json": "tests/test_inspect.py::test_inspect_command_prints_table_and_writes_plot_and_json",
    "sngan inspect --ckpt $SN --compare $WN --compare $WC --plot compare.pdf":
        "tests/test_inspect_figure.py::test_compare_draws_one_panel_per_checkpoint_with_one_legend",
    "sngan report runs/demo-000": "tests/test_report.py::test_report_on_a_finished_run_writes_its_picture",
    "sngan report runs/demo-000 --out report.pdf":
        "tests/test_report_figures.py::test_report_as_pdf_and_svg_keeps_charts_as_vector_text",
    "sngan sample --ckpt $CKPT --out grid.png --num 64 --seed 0":
        SAMPLING + "test_same_seed_gives_byte_identical_outputs",
    "sngan sample --ckpt $CKPT --out fakes --num 10000":
        SAMPLING + "test_folder_holds_exactly_n_readable_pngs_matching_the_npz",
    "sngan sample --ckpt $CKPT --out fakes.npz --num 10000": SAMPLING + "test_npz_has_stated_dtype_and_shape",
    "sngan sample --ckpt $CKPT --out picks --seeds 0-35":
        "tests/test_sample_exports.py::test_each_seed_gives_its_own_image_whatever_the_other_seeds",
    "sngan sample --ckpt $CKPT --out soft.png --truncation 2.0":
        "tests/test_sample_exports.py::test_truncation_redraws_large_entries_from_the_seeded_stream",
    "sngan sample --ckpt $CKPT --out walk.png --interpolate 10 --num 6":
        SAMPLING + "test_latent_interpolation_runs_from_seed_to_end_seed",
    "sngan sample --ckpt $COND --out cats.png --class cat":
        "tests/test_class_names.py::test_class_by_name_gives_that_label_and_the_same_images_as_its_index",
    "sngan sample --ckpt $COND --out rows.png --classes all --num 8": SAMPLING + "test_class_and_per_class_grid",
    "sngan sample --ckpt $COND --out morph.gif --classes cat,dog --interpolate 9":
        SAMPLING + "test_class_interpolation_starts_and_ends_at_the_classes",
    "sngan train --config configs/demo.yaml --out runs/demo": TRAIN,
    "sngan sample --ckpt runs/demo/checkpoints/ckpt-0000900.pt --out docs/demo_grid.png --num 64 --seed 0":
        SAMPLING + "test_same_seed_gives_byte_identical_outputs",
    "sngan sample --ckpt runs/demo/checkpoints/ckpt-0000900.pt --out docs/demo_interpolation.png --interpolate 10 "
    "--num 6 --seed 0": SAMPLING + "test_latent_interpolation_runs_from_seed_to_end_seed",
    "sngan report runs/demo --out docs/demo_report.png":
        "tests/test_report_figures.py::test_report_as_pdf_and_svg_keeps_charts_as_vector_text",
    "OMP_NUM_THREADS=1 sngan study --plan configs/study/demo.yaml": STUDY,
    "sngan study --plan configs/study/figure1_cifar10.yaml --jobs 8": JOBS,
    "sngan study --plan configs/study/figure1_stl10.yaml --jobs 8": JOBS,
    "sngan study --plan configs/study/appendix_e_cifar10.yaml": STUDY,
    "sngan study --plan configs/study/figure9_cifar10.yaml": STUDY,
    "sngan train --config configs/cifar10_resnet.yaml": TRAIN,
    "sngan train --config configs/cifar10_resnet.yaml --set train.iterations=1000 --set optim.lr=1e-4":
        "tests/test_cli_small.py::test_a_bad_set_is_blamed_on_the_set_not_on_the_file",
    "sngan train --config configs/cifar10_resnet.yaml --out runs/mine": TRAIN,
    "sngan train --out runs/mine --resume auto": RESUME,
    "sngan train --resume runs/mine/checkpoints/ckpt-0010000.pt --set train.iterations=60000":
        "tests/test_ownership.py::test_a_superseded_checkpoint_is_refused_in_its_folder_and_continues_in_a_new_one",
    "torchrun --standalone --nproc_per_node=2 -m sngan train --config configs/demo.yaml": TORCHRUN,
}


def test_every_doc_command_is_run_or_says_why_not():
    commands = doc_commands()
    assert len(commands) > 40  # the parser sees the docs' commands
    missing = [c for c, why in commands if why is None and c not in RUN_HERE and c not in RUN_BY]
    assert not missing, "commands in the docs that no test runs and no mark explains:\n" + "\n".join(missing)
    stale = (set(RUN_HERE) | set(RUN_BY)) - {c for c, _ in commands}
    assert not stale, f"commands no longer in the docs: {sorted(stale)}"


def test_no_command_stands_outside_a_shell_block():
    """A command in prose or in an output/yaml block would escape the check above: it must sit in a shell block."""
    outside = []
    for page in PAGES:
        fence = None
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                fence = None if fence else line.strip()
            elif fence not in SHELL_FENCES and "`" not in line and COMMAND_LINE.match(line):
                outside.append(f"{page.name}:{number}: {line.strip()}")
    assert not outside, outside


def test_the_command_parser_reads_every_shell_fence_and_drops_prompts(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ sngan report runs/x   # a comment\n```\n\n<!-- not run by tests: why -->\n"
                    "```sh\nsngan eval --ckpt A \\\n    --protocol paper\n```\n")
    assert doc_commands([page]) == [("sngan report runs/x", None), ("sngan eval --ckpt A --protocol paper", "why")]


@pytest.mark.parametrize("command", sorted(RUN_BY))
def test_the_named_test_runs_that_command_with_those_options(command):
    """The named test exists, and its file calls the same subcommand with every option the docs line shows."""
    path, _, name = RUN_BY[command].partition("::")
    source = (REPO / path).read_text()
    assert name in {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}, RUN_BY[command]
    for helper in re.findall(r"^from tests\.(\w+) import", source, re.M):  # a shared helper builds the command
        source += (REPO / "tests" / f"{helper}.py").read_text()
    words = command.split()
    sub = next(w for w in words if w in SUBCOMMANDS)
    assert f'"{sub}"' in source or f"'{sub}'" in source, (sub, path)
    for option in {w.split("=")[0] for w in words if w.startswith("--")} - {"--standalone"}:
        if option.startswith(("--nproc", "--rdzv", "--nnodes", "--max-restarts")):
            option = option.replace("_", "")[:8]  # torchrun spells them with - or _ alike
            assert option in source.replace("_", ""), (option, path)
        else:
            assert option in source, (option, path)


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_cheap_doc_commands_run_as_written(command, monkeypatch):
    """Run from the repository root, as the docs show; each writes nothing there."""
    monkeypatch.chdir(REPO)
    before = sorted(p.name for p in REPO.iterdir())
    args = shlex.split(command.split(" | ")[0])[1:]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = RUN_HERE[command]
    if expected.endswith(" lines"):
        assert len(result.output.strip().splitlines()) == int(expected.split()[0])
    else:
        assert expected in result.output
    assert sorted(p.name for p in REPO.iterdir()) == before


def test_every_docs_page_is_listed_in_the_index_reached_from_the_readme():
    index = (REPO / "docs" / "README.md").read_text()
    assert "](docs/README.md)" in (REPO / "README.md").read_text()
    pages = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.name != "README.md"]
    unlisted = [name for name in pages if f"]({name})" not in index]
    assert not unlisted, f"docs pages missing from docs/README.md: {unlisted}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
