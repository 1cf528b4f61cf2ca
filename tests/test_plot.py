import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from labutils import plot
from labutils.plot import LivePlot, heatmap, show_images


def test_live_plot_outside_a_notebook_keeps_history_and_draws_once_at_the_end():
    with LivePlot(title="t") as live:
        for step in range(5):
            live.update(step, train_loss=1.0 / (step + 1), test_acc=0.5 + step / 10)
    assert live.history["train_loss"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert live.steps["test_acc"] == [0, 1, 2, 3, 4]
    assert len(live.figure.axes) == 2  # losses left, metrics right


def test_live_plot_needs_a_metric():
    with pytest.raises(ValueError, match="at least one metric"):
        LivePlot().update(0)


@pytest.mark.parametrize("allow_stdin, live", [(True, True), (False, False)])
def test_live_plot_is_live_only_when_someone_watches(monkeypatch, allow_stdin, live):
    """JupyterLab runs cells with stdin allowed; nbclient, papermill and nbval with it disabled (headless)."""
    import IPython

    class Kernel:
        _allow_stdin = allow_stdin

    class Shell:
        kernel = Kernel()

    monkeypatch.delenv(plot.LIVE_ENV_VAR, raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert LivePlot().live is live
    monkeypatch.setenv(plot.LIVE_ENV_VAR, "0")
    assert LivePlot().live is False


def test_plot_history_is_gone():
    assert not hasattr(plot, "plot_history")  # no chapter used it; LivePlot draws the curves


@pytest.mark.parametrize("shape", [(6, 8, 8), (6, 1, 8, 8), (6, 3, 8, 8), (6, 8, 8, 3)])
def test_show_images_accepts_common_layouts(shape):
    fig = show_images(torch.rand(shape), labels=list(range(6)), ncols=4)
    assert sum(1 for ax in fig.axes if ax.images) == 6


def test_show_images_rejects_bad_input():
    with pytest.raises(ValueError, match="expects N images"):
        show_images(np.zeros(5))
    with pytest.raises(ValueError, match="6 images but 2 labels"):
        show_images(np.zeros((6, 4, 4)), labels=[1, 2])


def test_heatmap_labels_and_annotations():
    ax = heatmap(np.eye(3), row_labels="abc", col_labels="xyz", title="attention")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert len(ax.texts) == 9
    with pytest.raises(ValueError, match="2-D"):
        heatmap(np.zeros(3))
    with pytest.raises(ValueError, match="row_labels has 2"):
        heatmap(np.zeros((3, 3)), row_labels="ab")


def test_chinese_labels_render_with_no_missing_glyph():
    import warnings

    import matplotlib.pyplot as plt
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    from labutils.plot import CHINESE_FONT, use_chinese_font

    assert CHINESE_FONT == use_chinese_font() == "WenQuanYi Micro Hei"
    label = "注意力权重 · 循环神经网络：质量很好，送货快"
    path = font_manager.findfont(font_manager.FontProperties(family=CHINESE_FONT), fallback_to_default=False)
    font = FT2Font(path)
    assert all(font.get_char_index(ord(ch)) for ch in label if ch != " ")
    fig, ax = plt.subplots()
    ax.set_title(label)
    heatmap(np.eye(3), row_labels="好差慢", col_labels=["质量", "很好", "attention"], ax=ax)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" per missing glyph
        fig.canvas.draw()
    plt.close(fig)
