"""pxr.runner.light_records: PNG figures of an executed notebook become JPEG thumbnails, widget state goes, text stays."""

import base64
import io
import json

import pytest
from PIL import Image

from pxr.runner import light_records


def _png_b64(size=(1800, 1200), mode="RGBA") -> str:
    """A matplotlib line plot as the inline backend embeds it (transparent where the figure is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(size[0] / 200, size[1] / 200), dpi=200)
    for k in range(6):
        axis.plot([((i * (k + 3)) % 17) / 17 for i in range(300)], label=f"run {k}")
    axis.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", transparent=mode == "RGBA")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.slow
def test_png_figures_become_small_jpegs_and_text_is_kept(tmp_path):
    path = tmp_path / "executed.ipynb"
    figure = {"output_type": "display_data", "data": {"image/png": _png_b64(), "text/plain": "<Figure>"},
              "metadata": {"image/png": {"width": 1800}}}  # fmt: skip
    small = {"output_type": "display_data", "data": {"image/jpeg": _jpeg_b64((200, 100))}, "metadata": {}}
    strip = {"output_type": "display_data", "data": {"image/jpeg": _jpeg_b64((5000, 250))}, "metadata": {}}
    printed = {"output_type": "stream", "name": "stdout", "text": "accuracy 0.61\n"}
    notebook = {"cells": [{"cell_type": "code", "source": "plot()", "outputs": [figure, printed, small, strip], "metadata": {},
                           "execution_count": 1}], "metadata": {"widgets": {"state": {"k": "v" * 1000}}, "kernelspec": {"name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path.write_text(json.dumps(notebook))
    before, after = light_records.lighten_notebook(path)
    assert after < before / 2
    saved = json.loads(path.read_text())
    assert saved["metadata"] == {"kernelspec": {"name": "python3"}}  # the progress bars' widget state is gone
    outputs = saved["cells"][0]["outputs"]
    data = outputs[0]["data"]
    assert "image/png" not in data and data["text/plain"] == "<Figure>"
    image = Image.open(io.BytesIO(base64.b64decode(data["image/jpeg"])))
    assert image.format == "JPEG" and image.size == (547, 365)  # 200,000 px at most, the aspect kept
    assert sum(image.getpixel((0, 364))) > 700  # transparency on white
    assert outputs[0]["metadata"]["image/jpeg"] == {"width": 547, "height": 365}
    assert outputs[1] == printed
    assert outputs[2] == small  # a JPEG within the budget is left alone
    shrunk = Image.open(io.BytesIO(base64.b64decode(outputs[3]["data"]["image/jpeg"])))
    assert shrunk.size == (2000, 100)  # a wide strip keeps its shape
    # a second pass has nothing left to do
    assert light_records.lighten_notebook(path)[0] == light_records.lighten_notebook(path)[1]


def _jpeg_b64(size) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_small_figure_is_not_enlarged(tmp_path):
    jpeg, size = light_records.jpeg_thumbnail(_png_b64((300, 200), "RGB"))
    assert size == (300, 200) and Image.open(io.BytesIO(base64.b64decode(jpeg))).size == (300, 200)
