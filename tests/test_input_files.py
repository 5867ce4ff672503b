"""Every input file is a regular file before it is read: a FIFO or a device among the inputs (images, a checkpoint,
a run's records and grids) is one line, never a read or a write that blocks (issue 36 §2); and what is wrong with
an input is said of the file that is wrong."""

import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import SnganError
from sngan.evaluation.images import open_images
from sngan.io import open_input
from tests.helpers import one_line

runner = CliRunner()


def _pngs(folder, names, side=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((side, side, 3), 40 * i, np.uint8)).save(folder / name)


def _within(seconds, fn):
    """fn()'s result or exception, or a failure if it has not returned in `seconds` (a FIFO read blocks for ever:
    a daemon thread keeps the test from hanging with it)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("fifo_name", ["a_fifo.png", "m_fifo.png", "z_fifo.jpg"])  # sorts first, middle, last
def test_a_fifo_among_the_images_is_one_line_and_never_blocks(tmp_path, fifo_name):
    folder = tmp_path / "images"
    _pngs(folder, ["b.png", "c.png", "n.png"])
    os.mkfifo(folder / fifo_name)

    def score_inputs():
        images = open_images(folder)
        return [batch for batch in images.batches(images.count, 2)]

    with pytest.raises(SnganError, match=f"{fifo_name}: is a FIFO, not a regular file"):
        _within(20, score_inputs)


def test_a_fifo_or_a_device_given_as_the_images_is_named_for_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "images.npz")
    with pytest.raises(SnganError, match=r"'.*images.npz' is a FIFO, not a folder of images or an .npz file"):
        _within(20, lambda: open_images(tmp_path / "images.npz"))
    with pytest.raises(SnganError, match="'/dev/zero' is a character device, not a folder of images"):
        _within(20, lambda: open_images("/dev/zero"))
    with pytest.raises(SnganError, match="does not exist"):
        open_images(tmp_path / "missing")


def test_eval_images_with_a_fifo_first_exits_1_with_one_line_before_anything_else(tmp_path):
    folder = tmp_path / "images"
    _pngs(folder, ["b.png", "c.png"])
    os.mkfifo(folder / "a_fifo.png")
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    result = _within(60, lambda: runner.invoke(app, [
        "eval", "--images", str(folder), "--stats", str(tmp_path / "stats.npz"), "--device", "cpu", "--no-progress",
        "--inception-weights", str(tmp_path / "no-weights.pth")]))  # the images are checked before the weights
    assert result.exit_code == 1
    assert result.output == f"error: {folder / 'a_fifo.png'}: is a FIFO, not a regular file\n"


def test_open_input_refuses_what_is_not_a_regular_file_and_reads_what_is(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"abc")
    with open_input(tmp_path / "f.bin") as f:
        assert f.read() == b"abc"
    os.symlink(tmp_path / "f.bin", tmp_path / "link.bin")  # an input may be a link to a regular file
    with open_input(tmp_path / "link.bin") as f:
        assert f.read() == b"abc"
    os.mkfifo(tmp_path / "p")
    with pytest.raises(SnganError, match="is a FIFO"):
        _within(20, lambda: open_input(tmp_path / "p"))
    with pytest.raises(SnganError, match="is a folder, not a regular file"):
        open_input(tmp_path)


@pytest.mark.parametrize("odd", [0, 2, 4])  # the odd image sorts first, in the middle, last
def test_images_of_mixed_sizes_blame_the_odd_file_not_the_majority(tmp_path, odd):
    folder = tmp_path / "images"
    names = [f"{i}.png" for i in range(5)]
    _pngs(folder, names)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(folder / names[odd])
    images = open_images(folder)
    with pytest.raises(SnganError) as caught:
        list(images.batches(images.count, 5))
    message = str(caught.value)
    assert message.startswith(f"{folder / names[odd]}: 12x12, but 4 of the 5 images under {folder} are 8x8")


def test_a_fifo_as_metrics_or_grid_or_json_output_never_blocks(tiny_runs, tmp_path):
    run = shutil.copytree(tiny_runs["uncond"], tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    start = time.monotonic()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1 and "metrics.jsonl: is a FIFO, not a regular file" in one_line(result)
    run2 = shutil.copytree(tiny_runs["uncond"], tmp_path / "run2")
    grid = sorted((run2 / "samples").glob("step-*.png"))[-1]
    grid.unlink()
    os.mkfifo(grid)
    result = runner.invoke(app, ["report", str(run2)])
    assert result.exit_code == 1 and "is a FIFO, not a regular file" in one_line(result)
    os.mkfifo(tmp_path / "out.json")
    ckpt = str(sorted((run2 / "checkpoints").glob("ckpt-*.pt"))[-1])
    result = runner.invoke(app, ["eval", "--ckpt", ckpt, "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and "is a FIFO, not a regular file" in one_line(result)
    assert time.monotonic() - start < 300  # checked before any work: an open() that waited for a writer never ends


def test_a_metrics_line_nested_past_the_recursion_limit_is_a_corrupt_line(tmp_path):
    from sngan.io import read_jsonl

    (tmp_path / "m.jsonl").write_text("[" * 100_000 + "\n" + '{"step": 1}\n')
    with pytest.raises(SnganError, match="line 1 is not a JSON object"):
        read_jsonl(tmp_path / "m.jsonl")


def test_a_device_as_checkpoint_is_refused_without_reading_it():
    result = runner.invoke(app, ["sample", "--ckpt", "/dev/zero", "--out", "never.png"])
    assert result.exit_code == 1 and "/dev/zero: not a regular file, so not a checkpoint" in one_line(result)
