"""Executed notebooks made light before their record is kept: figures as JPEG thumbnails, no progress-bar state.

Matplotlib's inline backend embeds every figure as a full-size PNG, and a trajectory strip can be a 5,560-px-wide
JPEG; a training notebook's records reached a megabyte of base64 that git keeps forever. After papermill saves a
run's `executed.ipynb`, the runner (`pxr.runner.runs`) rewrites each PNG output, and each JPEG larger than the budget, as a
JPEG of at most `max_pixels` pixels (the aspect ratio kept): a reader still sees the curves and zoom boxes, at a
fraction of the bytes. Transparency is flattened onto white, as the notebook showed it. The notebook's saved widget
state (tqdm progress bars drawn as ipywidgets: 124 KB in a perception-base record) goes too: a saved notebook
shows its progress bars as text anyway.

Tests: tests/test_light_records.py.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

MAX_PIXELS = 200_000  # a thumbnail read on screen (e.g. 1,000 x 200): a record stays near 150 KB
QUALITY = 75  # JPEG quality: lines and text stay legible


def jpeg_thumbnail(b64: str, *, max_pixels: int = MAX_PIXELS, quality: int = QUALITY) -> tuple[str, tuple[int, int]]:
    """A base64 PNG or JPEG as a base64 JPEG of at most `max_pixels` pixels; returns it and its size."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("RGB")
    if (scale := (max_pixels / (image.width * image.height)) ** 0.5) < 1:
        # rounded down, so the thumbnail is within the budget and a second pass leaves it alone
        size = (max(1, int(image.width * scale + 1e-9)), max(1, int(image.height * scale + 1e-9)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), image.size


def _pixels(b64: str) -> int:
    width, height = Image.open(io.BytesIO(base64.b64decode(b64))).size
    return width * height


def lighten_notebook(path: str | Path, *, max_pixels: int = MAX_PIXELS, quality: int = QUALITY) -> tuple[int, int]:
    """Rewrite every PNG output, and every JPEG over `max_pixels`, of the notebook at `path` as a JPEG thumbnail, and
    drop its saved widget state, in place. Returns the file's bytes before and after (equal when there was nothing
    to lighten)."""
    path = Path(path)
    raw = path.read_text()
    notebook = json.loads(raw)
    changed = False
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            kind = "image/png" if data.get("image/png") else "image/jpeg" if data.get("image/jpeg") else None
            if kind is None:
                continue
            encoded = "".join(data[kind]) if isinstance(data[kind], list) else data[kind]
            try:
                if kind == "image/jpeg" and _pixels(encoded) <= max_pixels:
                    continue
                jpeg, (width, height) = jpeg_thumbnail(encoded, max_pixels=max_pixels, quality=quality)
            except OSError:  # not a readable image: leave it as the kernel wrote it
                continue
            del data[kind]
            data["image/jpeg"] = jpeg
            metadata = output.setdefault("metadata", {})
            metadata.pop(kind, None)
            metadata["image/jpeg"] = {"width": width, "height": height}
            changed = True
    if notebook.get("metadata", {}).pop("widgets", None) is not None:
        changed = True
    if not changed:
        return len(raw.encode()), len(raw.encode())
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    path.write_text(text)
    return len(raw.encode()), len(text.encode())
