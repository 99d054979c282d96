"""Rendering helpers for the notebooks: boxes on images, images side by side at their true
aspect ratio, pixel-exact upscaling, numbered frame strips and markdown tables.

Everything returns a value (a PIL image, a matplotlib Figure, a string) for the notebook to display; nothing calls
`plt.show()` or touches pyplot's global figure list, so the helpers work under any backend, Agg included, and do
not leak figures in long papermill runs. Figures come from `matplotlib.figure.Figure` directly; Jupyter displays
a returned Figure as a PNG.

Tests: tests/test_viz.py.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageDraw, ImageFont

from pxr.scenes import contrast_ink


def _box_list(boxes) -> list[Sequence[float]]:
    boxes = list(boxes)
    # A single flat box is common enough in notebooks ("draw the cue box") to accept without wrapping.
    if len(boxes) == 4 and all(isinstance(v, numbers.Real) for v in boxes):
        return [boxes]
    return boxes


def _tag(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    text: str,
    *,
    fill,
    font,
    padding: int,
    fit: tuple[int, int] | None = None,
    above: bool = False,
) -> None:
    """A filled label whose top-left (bottom-left with `above`, if it fits) corner is `xy`, kept inside `fit`."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tag_w, tag_h = right - left + 2 * padding, bottom - top + 2 * padding
    x, y = xy
    if above and y >= tag_h:
        y -= tag_h
    if fit is not None:
        x, y = max(0, min(x, fit[0] - tag_w)), max(0, min(y, fit[1] - tag_h))
    draw.rectangle([x, y, x + tag_w - 1, y + tag_h - 1], fill=fill)
    draw.text((x + padding - left, y + padding - top), text, font=font, fill=contrast_ink(fill))


def draw_boxes(
    image: Image.Image,
    boxes,
    *,
    labels: Sequence[str] | None = None,
    color=(255, 40, 40),
    width: int | None = None,
    normalized: bool = False,
    width_frac: float = 0.003,
    label_height_frac: float = 0.025,
) -> Image.Image:
    """A copy of `image` with box outlines (and labels such as "1", "2" in filled tags at their top-left corners).

    Boxes are [x1, y1, x2, y2], end-exclusive pixels (or fractions of the size with `normalized=True`); the outline
    is drawn inside each box. Line width and label size scale with the image's long side unless given.
    """
    out = image.convert("RGB")  # convert always copies, so the caller's image is never drawn on
    w, h = out.size
    boxes = _box_list(boxes)
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"got {len(labels)} labels for {len(boxes)} boxes")
    line = width if width is not None else max(2, round(width_frac * max(w, h)))
    font = ImageFont.load_default(size=max(10, round(label_height_frac * max(w, h))))
    draw = ImageDraw.Draw(out)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (float(v) for v in box)
        if normalized:
            x1, y1, x2, y2 = x1 * w, y1 * h, x2 * w, y2 * h
        x1, y1, x2, y2 = round(x1), round(y1), round(x2) - 1, round(y2) - 1
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line)
        if labels is not None:
            # Above the box where there is room, so the label hides nothing inside it.
            _tag(draw, (x1, y1), str(labels[i]), fill=color, font=font, padding=line, fit=(w, h), above=True)
    return out


def pixelated(image: Image.Image, scale: float) -> Image.Image:
    """Nearest-neighbour upscaling, so a tiny crop shows its real pixels instead of a smoothed blur."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    w, h = image.size
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST)


def as_shown_views(
    source: Image.Image, shown: Image.Image, box: Sequence[float], *, margin: float, enlarge: float = 12
) -> tuple[list[Image.Image], list[str]]:
    """What the model sees of a detail, for `show_images`: the whole image as shown, the region `box` (source px)
    grown by `margin` px per side as shown (enlarged `enlarge` times, pixel for pixel), and that region in the source."""
    near = [box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin]
    scale = shown.width / source.width
    images = [shown, pixelated(shown.crop([round(v * scale) for v in near]), enlarge), source.crop(near)]
    titles = [f"as the model sees it ({shown.width}x{shown.height})", "the target as shown (enlarged)",
              "the target in the source"]  # fmt: skip
    return images, titles


def zoom_views(source: Image.Image, zoomed, cue_box: Sequence[float]) -> tuple[list[Image.Image], list[str]]:
    """What `zoom_in` did, for `show_images`: the source with the zoom box (`zoomed`, the new image's
    `pxr.episode.ImageEntry`) and the cue box drawn, and the new image as the model is shown it."""
    n, crop = zoomed.number, zoomed.shown
    images = [draw_boxes(source, [zoomed.root_box, cue_box], labels=[f"image {n}", "cue"]), crop]
    return images, ["the zoom box on the source", f"image {n}, as returned ({crop.width}x{crop.height})"]


def show_images(
    images: Sequence[Image.Image | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    height: float = 3.0,
    max_cols: int = 6,
    padding: float = 0.15,
    title_height: float = 0.35,
    title_fontsize: float = 9.0,
) -> Figure:
    """Images side by side, each `height` inches tall at its true aspect ratio, wrapped after `max_cols`.

    `titles=None` captions each image with its size ("448x308"), the thing one most often needs to see; empty
    strings show no title. Pixels are shown with nearest interpolation (no smoothing).
    """
    arrays = [np.asarray(image) for image in images]
    if not arrays:
        raise ValueError("show_images needs at least one image")
    if titles is None:
        titles = [f"{a.shape[1]}x{a.shape[0]}" for a in arrays]
    if len(titles) != len(arrays):
        raise ValueError(f"got {len(titles)} titles for {len(arrays)} images")
    rows = [list(range(start, min(start + max_cols, len(arrays)))) for start in range(0, len(arrays), max_cols)]
    widths = [height * a.shape[1] / a.shape[0] for a in arrays]
    row_height = height + title_height + padding
    fig_w = max(sum(widths[i] for i in row) + padding * (len(row) + 1) for row in rows)
    fig_h = len(rows) * row_height + padding
    fig = Figure(figsize=(fig_w, fig_h))
    for r, row in enumerate(rows):
        x = padding
        bottom = fig_h - (r + 1) * row_height
        for i in row:
            ax = fig.add_axes((x / fig_w, bottom / fig_h, widths[i] / fig_w, height / fig_h))
            gray = arrays[i].ndim == 2
            ax.imshow(
                arrays[i],
                interpolation="nearest",
                cmap="gray" if gray else None,
                vmin=0 if gray else None,
                vmax=255 if gray else None,
            )
            ax.set_axis_off()
            if titles[i]:
                ax.set_title(titles[i], fontsize=title_fontsize)
            x += widths[i] + padding
    return fig


def frame_strip(
    frames: Sequence[Image.Image],
    *,
    highlight: Iterable[int] = (),
    numbers: bool = True,
    gap: int = 4,
    frame_height: int | None = None,
    highlight_color=(255, 40, 40),
    outline_width: int | None = None,
    outline_frac: float = 0.025,
    number_height_frac: float = 0.14,
    background=(255, 255, 255),
) -> Image.Image:
    """Frames in one row, `gap` pixels apart, each tagged with its 1-based number; `highlight` numbers are outlined.

    Frames are scaled to `frame_height` (default: the first frame's height) keeping their aspect ratio, so the strip
    is `sum(widths) + gap * (n - 1)` wide and `frame_height` tall; outlines are drawn inside the frames.
    """
    if not frames:
        raise ValueError("frame_strip needs at least one frame")
    strip_h = frame_height or frames[0].size[1]
    scaled = [
        f.convert("RGB").resize((max(1, round(f.size[0] * strip_h / f.size[1])), strip_h), Image.BILINEAR)
        if f.size[1] != strip_h
        else f.convert("RGB")
        for f in frames
    ]
    highlighted = set(highlight)
    unknown = highlighted - set(range(1, len(frames) + 1))
    if unknown:
        raise ValueError(f"highlight numbers {sorted(unknown)} are outside 1..{len(frames)}")
    strip = Image.new("RGB", (sum(f.size[0] for f in scaled) + gap * (len(scaled) - 1), strip_h), background)
    draw = ImageDraw.Draw(strip)
    line = outline_width or max(2, round(outline_frac * strip_h))
    font = ImageFont.load_default(size=max(9, round(number_height_frac * strip_h)))
    x = 0
    for number, frame in enumerate(scaled, start=1):
        strip.paste(frame, (x, 0))
        if number in highlighted:
            draw.rectangle([x, 0, x + frame.size[0] - 1, strip_h - 1], outline=highlight_color, width=line)
        if numbers:
            tag_fill = highlight_color if number in highlighted else (0, 0, 0)
            _tag(draw, (x + line, line), str(number), fill=tag_fill, font=font, padding=max(1, line // 2))
        x += frame.size[0] + gap
    return strip


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        text = f"{float(value):.4g}"
    else:
        text = str(value)
    # A pipe would split the cell and a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of `rows` (missing keys and None as empty cells, floats to 4 significant digits).

    `columns` defaults to every key in order of first appearance. Display in a notebook with
    `IPython.display.Markdown(markdown_table(rows))`.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def trajectory_images(record: dict, root) -> tuple[list[Image.Image], list[str]]:
    """The pictures of a trajectory record (`pxr.data.TrajectoryRecord.to_dict()`), for `show_images`: the input with
    every zoom box of image 1 drawn and numbered (a video as a frame strip with the selected frames outlined), then
    each returned image titled with its number and whether the op was a corrected mistake."""
    from pathlib import Path

    root = Path(root)
    inputs = [Image.open(root / p).convert("RGB") for p in record["inputs"]]
    images = record["meta"]["episode"]["images"]
    if record["is_video"]:
        picked = {img["frame"] for img in images if img["origin"] == "select"}
        first, title = frame_strip(inputs, highlight=picked), "the video (selected frames outlined)"
    else:
        zooms = [img for img in images if img["origin"] == "zoom" and img["root"] == 1]
        first = draw_boxes(inputs[0], [z["root_box"] for z in zooms], labels=[str(z["number"]) for z in zooms])
        title = "image 1 with the zoom boxes"
    pictures, titles = [first], [title]
    for turn, previous in zip(record["turns"][1:], record["turns"], strict=False):
        for path in turn["images"]:
            pictures.append(Image.open(root / path).convert("RGB"))
            number = Path(path).stem
            titles.append(f"image {number}" + ("" if previous["trainable"] else " (wrong op, masked)"))
    return pictures, titles


def trajectory_markdown(record: dict, *, max_chars: int = 400) -> str:
    """The turns of a trajectory as markdown: assistant turns marked trainable or masked, observations in italics."""
    lines = [f"**{record['id']}** ({record.get('variant', 'rollout')}): {record['question']}  \n"]
    for turn in record["turns"]:
        text = turn["text"] if len(turn["text"]) <= max_chars else turn["text"][: max_chars - 3] + "..."
        text = text.replace("<", "&lt;").replace("\n", " ")
        if turn["role"] == "observation":
            lines.append(f"> *{text}*  \n")
        else:
            lines.append(f"> **assistant{'' if turn['trainable'] else ' (masked)'}:** {text}  \n")
    return "".join(lines)


def rollout_images(trajectory) -> tuple[list[Image.Image], list[str]]:
    """The pictures of a rollout (`pxr.rollout.Trajectory`), for `show_images`: the input as the model saw it with
    every zoom box of image 1 drawn and numbered (a video as its frame strip), then every image the ops returned."""
    episode = trajectory.episode
    first = episode.entries[0]
    if episode.is_video:
        picked = {e.frame for e in episode.entries if e.origin == "select"}
        pictures = [frame_strip([e.shown for e in episode.entries[: episode.n_inputs]], highlight=picked)]
        titles = ["the video as shown (selected frames outlined)"]
    else:
        scale = first.shown.width / first.root_box[2]
        zooms = [e for e in episode.entries if e.origin == "zoom" and e.root == 1]
        boxes = [[v * scale for v in e.root_box] for e in zooms]
        pictures = [draw_boxes(first.shown, boxes, labels=[str(e.number) for e in zooms]) if zooms else first.shown]
        titles = [f"image 1 as shown ({first.shown.width}x{first.shown.height})"]
    for entry in episode.entries[episode.n_inputs :]:
        pictures.append(entry.shown)
        titles.append(f"image {entry.number} ({entry.origin} of image {entry.parent})")
    return pictures, titles


SMOOTH_POINTS = 20  # smooth="auto": a rolling mean over a twentieth of a series' points


def smoothing_window(n_points: int) -> int:
    """The rolling-mean window `curves(smooth="auto")` uses for a series of `n_points`: 1 (none) below 40 points."""
    return max(1, n_points // SMOOTH_POINTS)


def curves(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
    size: tuple[float, float] = (5.0, 2.6),
    smooth: int | str = 1,
    references: dict[str, float] | None = None,
) -> Figure:
    """Named (x, y) series on one axis: a loss curve, RaPR against accuracy, ...

    `smooth`: a trailing rolling mean over that many points (`pxr.evaluation.ablations.smooth`), or "auto"
    (`smoothing_window`); a smoothed series is drawn solid, labelled with its window, over its raw values drawn faint
    in the same colour. `references`: named horizontal lines, dashed (a target such as H, a baseline)."""
    from pxr.evaluation.ablations import smooth as rolling_mean

    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    for name, points in series.items():
        if not points:
            continue
        window = smoothing_window(len(points)) if smooth == "auto" else int(smooth)
        xs, ys = zip(*points, strict=True)
        if window > 1:
            (raw,) = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)
            xs, ys = zip(*rolling_mean(list(points), window), strict=True)
            ax.plot(xs, ys, label=f"{name} (mean of {window})", color=raw.get_color())
        else:
            ax.plot(xs, ys, label=name, marker="." if len(points) < 30 else None)
    for name, value in (references or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    labels = ax.get_legend_handles_labels()[1]
    if len(labels) > 1 or any("(mean of" in label for label in labels):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


RIGHT_COLOR = (30, 150, 60)
WRONG_COLOR = (200, 40, 40)


def _wrap(text: str, font, width: int) -> list[str]:
    import textwrap

    per_line = max(10, int(width / max(1.0, font.getlength("abcdefghij") / 10)))
    return [line for paragraph in text.splitlines() or [""] for line in textwrap.wrap(paragraph, per_line) or [""]]


def render_trajectory(
    trajectory,
    *,
    score: float | None = None,
    image_height: int = 220,
    min_width: int = 720,
    max_turn_chars: int = 500,
    font_size: int = 13,
    gap: int = 8,
) -> Image.Image:
    """One picture of a rollout (`pxr.rollout.Trajectory`): a header with the question, the gold and predicted
    answers and, given a `score`, a right (green) or wrong (red) band; the input with every zoom box drawn and
    numbered (a video as its frame strip, selected frames outlined) and every returned crop or frame beside it, each
    `image_height` pixels tall and captioned; then the text of each turn."""
    pictures, titles = rollout_images(trajectory)
    for i, entry in enumerate(trajectory.episode.entries[trajectory.episode.n_inputs :], start=1):
        if entry.blank:
            titles[i] += " blank"
    scaled = [p.resize((max(1, round(p.width * image_height / p.height)), image_height)) for p in pictures]
    font = ImageFont.load_default(size=font_size)
    line_h = font_size + 4
    width = max(min_width, sum(p.width for p in scaled) + gap * (len(scaled) + 1))
    query, episode = trajectory.query, trajectory.episode
    verdict = "" if score is None else ("RIGHT" if score >= 0.5 else "WRONG") + f" (score {score:.2f})  "
    header = _wrap(f"{verdict}{query.id}: {query.question}", font, width - 2 * gap)
    header += [
        f"gold: {query.answer}   predicted: {episode.answer}   ending: {episode.ending}   ops: {episode.n_executed}"
    ]
    body = []
    for turn in trajectory.turns:
        text = turn.text if len(turn.text) <= max_turn_chars else turn.text[: max_turn_chars - 3] + "..."
        prefix = "assistant: " if turn.role == "assistant" else "observation: "
        body += _wrap(prefix + text, font, width - 2 * gap)
    header_h = len(header) * line_h + gap
    images_top = header_h + gap
    text_top = images_top + image_height + line_h + gap
    canvas = Image.new("RGB", (width, text_top + len(body) * line_h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    band = (235, 235, 235) if score is None else RIGHT_COLOR if score >= 0.5 else WRONG_COLOR
    draw.rectangle([0, 0, width - 1, header_h - 1], fill=band)
    ink = contrast_ink(band)
    for k, line in enumerate(header):
        draw.text((gap, gap // 2 + k * line_h), line, font=font, fill=ink)
    x = gap
    for picture, title in zip(scaled, titles, strict=True):
        canvas.paste(picture, (x, images_top))
        draw.text((x, images_top + image_height + 2), title[: max(8, picture.width // 7)], font=font, fill=(0, 0, 0))
        x += picture.width + gap
    for k, line in enumerate(body):
        color = (0, 0, 0) if line.startswith("assistant: ") or k == 0 else (60, 60, 60)
        draw.text((gap, text_top + k * line_h), line, font=font, fill=color)
    return canvas


def as_jpeg(image: Image.Image, quality: int = 85):
    """A PIL image for `display` as one JPEG (PIL's own display sends PNG and JPEG both: executed notebooks grow)."""
    import io

    from IPython.display import Image as DisplayImage

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return DisplayImage(data=buffer.getvalue(), format="jpeg")


def arm_small_multiples(
    panels: Sequence[dict],
    rows: Sequence[tuple[str, str]],
    *,
    colours: dict[str, str] | None = None,
    title: str = "",
    panel_size: tuple[float, float] = (3.2, 2.3),
    min_width: float = 4.5,
    ylim: tuple[float, float] | None = (-0.02, 1.02),
    absent_text: str = "not run",
    thin_width: float = 0.8,
    thick_width: float = 2.2,
) -> Figure:
    """Small multiples of step curves: one column per panel, one row per figure of `rows` ((key, y label)); in each
    panel every arm in its own colour, each of its runs a thin line and their mean a thick one (a lone run is drawn
    thick only).

    A panel is `{"title": str, "arms": {arm: {run: {key: [(x, y), ...]}}}, "hlines": {key: [(y, label), ...]}}`;
    one without arms (nothing has run there) shows `absent_text`. The mean at each x is over the runs that have that
    x. Colours come from `colours` (arm -> colour) or C0, C1, ... in order of first appearance; the thick lines carry
    the arm as label, the thin ones `_<run>`; one legend of the arms under the panels."""
    if not panels or not rows:
        raise ValueError("arm_small_multiples needs at least one panel and one row")
    palette = dict(colours or {})
    for panel in panels:
        for arm in panel.get("arms") or {}:
            palette.setdefault(arm, f"C{len(palette) % 10}")
    width = max(min_width, panel_size[0] * len(panels))
    fig = Figure(figsize=(width, panel_size[1] * len(rows) + (0.4 if title else 0.0)))
    axes = fig.subplots(len(rows), len(panels), squeeze=False, sharex="col", sharey="row")
    for c, panel in enumerate(panels):
        arms = panel.get("arms") or {}
        for r, (key, label) in enumerate(rows):
            ax = axes[r][c]
            if r == 0:
                ax.set_title(panel.get("title", ""), fontsize="medium")
            if c == 0:
                ax.set_ylabel(label)
            if r == len(rows) - 1:
                ax.set_xlabel("step")
            if ylim is not None:
                ax.set_ylim(*ylim)
            for y, name in (panel.get("hlines") or {}).get(key, []):
                ax.axhline(y, color="grey", linestyle="--", linewidth=0.8, label=f"_{name}")
                ax.annotate(
                    name,
                    (1.0, y),
                    xycoords=("axes fraction", "data"),
                    fontsize="x-small",
                    color="grey",
                    ha="right",
                    va="bottom",
                )
            if not arms:
                ax.text(0.5, 0.5, absent_text, transform=ax.transAxes, ha="center", va="center", color="grey")
                ax.tick_params(axis="x", labelbottom=False)
                continue
            for arm, runs in arms.items():
                series = {run: figures.get(key) or [] for run, figures in runs.items()}
                series = {run: points for run, points in series.items() if points}
                if not series:
                    continue
                if len(series) > 1:
                    for run, points in series.items():
                        xs, ys = zip(*points, strict=True)
                        ax.plot(xs, ys, color=palette[arm], linewidth=thin_width, alpha=0.45, label=f"_{run}")
                by_x: dict[float, list[float]] = {}
                for points in series.values():
                    for x, y in points:
                        by_x.setdefault(x, []).append(y)
                xs = sorted(by_x)
                ax.plot(
                    xs, [sum(by_x[x]) / len(by_x[x]) for x in xs], color=palette[arm], linewidth=thick_width, label=arm
                )
    shown = [arm for arm in palette if any(arm in (p.get("arms") or {}) for p in panels)]
    legend_rows = 0
    if shown:
        columns = max(1, min(len(shown), len(panels)))
        legend_rows = -(-len(shown) // columns)
        handles = [Line2D([], [], color=palette[arm], linewidth=thick_width) for arm in shown]
        fig.legend(handles, shown, loc="lower center", ncol=columns, fontsize="small", frameon=False)
    if title:
        fig.suptitle(title, fontsize="medium")
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, min(0.5, (0.05 + 0.2 * legend_rows) / height), 1, 1))
    return fig
