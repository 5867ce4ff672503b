"""The report's charts: per-layer series as a labelled heatmap, tick labels without an offset text under the title,
and a header that keeps the losses when the last record is an inspect record."""

import json

from matplotlib import pyplot as plt

from sngan.report.charts import heatmap_figure, line_figure
from sngan.report.page import _title, write_report


def test_heatmap_names_every_layer_and_leaves_missing_steps_blank():
    series = {f"sn_ratio/layer{i}": [(10.0, 1.0 + i / 100), (20.0, 1.0)] for i in range(11)}
    series["sn_ratio/layer0"] = [(10.0, 1.0)]
    fig = heatmap_figure(series, "sn_ratio/* (11 series)")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"layer{i}" for i in range(11)]
    data = ax.get_images()[0].get_array()
    assert data.shape == (11, 2) and data.mask[0, 1] and not data.mask[1, 1]
    plt.close(fig)


def test_tick_labels_carry_their_value_and_no_offset_text_overlaps_the_title():
    fig = line_figure({"sn_ratio_max": [(1000.0, 1.00001), (2000.0, 1.00003)]}, "sn_ratio_max")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
    assert any(t.get_text().startswith("1.0000") for t in ax.get_yticklabels())
    plt.close(fig)


def test_header_keeps_the_losses_when_an_inspect_record_comes_last(tmp_path):
    records = [{"step": 100, "d_loss": 1.25, "g_loss": 0.5, "lr": 2e-4, "it_per_s": 9.0},
               {"step": 100, "sn_ratio/linear": 1.0, "lipschitz_bound": 3.0}]
    summary = _title(tmp_path, records)[1]
    assert "step 100" in summary and "d_loss 1.25" in summary and "g_loss 0.5" in summary
    run = tmp_path / "run"
    run.mkdir()
    many = [{"step": s, **{f"sn_ratio/l{i}": 1.0 for i in range(11)}} for s in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records + many))
    assert write_report(run).read_bytes()[:4] == b"\x89PNG"


def test_report_as_pdf_and_svg_keeps_charts_as_vector_text(tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from sngan.cli import app

    for suffix in ("svg", "pdf"):
        out = tmp_path / f"report.{suffix}"
        result = CliRunner().invoke(app, ["report", str(tiny_runs["uncond"]), "--out", str(out)])
        assert result.exit_code == 0, result.output
    svg = (tmp_path / "report.svg").read_text()
    assert "<svg" in svg and "<image" in svg  # the grid as an image
    assert any("learning rate" in part.split("</text>")[0] for part in svg.split("<text")[1:])  # titles as text
    assert (tmp_path / "report.pdf").read_bytes()[:5] == b"%PDF-"
