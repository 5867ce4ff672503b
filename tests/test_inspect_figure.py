"""The spectra figure: every layer named and told apart (the one-value linear layer visible), and a panel per
checkpoint for comparisons."""

from matplotlib.colors import to_hex
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import ModelConfig
from sngan.inspect.command import inspect_checkpoint, run_label
from sngan.inspect.figure import spectra_figure
from tests.test_inspect import fresh_checkpoint


def test_every_layer_is_named_distinct_and_visible(tmp_path):
    ins = inspect_checkpoint(fresh_checkpoint(tmp_path / "runs" / "sn" / "checkpoints" / "d.pt",
                                              ModelConfig(resolution=32, g_ch=4, d_ch=4), forwards=1))
    assert len(ins.layers) > 10  # more layers than matplotlib's 10-colour cycle
    fig = spectra_figure([("sn", ins)])
    lines = fig.axes[0].get_lines()
    looks = {(to_hex(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(looks) == len(ins.layers)  # no two layers look alike
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [r.name for r in ins.layers]
    single = [line for line in lines if len(line.get_xdata()) == 1]
    assert single and all(line.get_marker() == "o" for line in single)  # the 1-value layer is a dot
    assert run_label(ins.checkpoint) == "sn"


def test_compare_draws_one_panel_per_checkpoint_with_one_legend(tmp_path):
    model = ModelConfig(resolution=32, g_ch=4, d_ch=4)
    paths = [fresh_checkpoint(tmp_path / name / "checkpoints" / "c.pt", model, forwards=1) for name in ("sn", "wn")]
    out = tmp_path / "cmp.svg"
    result = CliRunner().invoke(app, ["inspect", "--ckpt", str(paths[0]), "--compare", str(paths[1]), "--plot",
                                      str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    fig = spectra_figure([(run_label(p), inspect_checkpoint(p)) for p in paths])
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == ["sn", "wn"] and len(fig.legends) == 1
    result = CliRunner().invoke(app, ["inspect", "--ckpt", str(paths[0]), "--compare", str(paths[1])])
    assert result.exit_code == 1 and "give --plot too" in result.output
