"""A self-contained HTML report: summary, plots and per-triple thumbnails embedded as base64."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.images import open_image

STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}
img.thumb{display:block;max-width:128px;max-height:128px}td.id{text-align:left}"""


def image_data_uri(image: Image.Image, max_side: int = 128, fmt: str = "JPEG") -> str:
    thumb = image.copy()
    thumb.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format=fmt, quality=85)
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _cell(value: Any) -> str:
    if value is None:
        return "<td>–</td>"
    if isinstance(value, float):
        return f"<td>{value:.4f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def render_report(title: str, summary: Mapping[str, Mapping[str, float]], plots: Sequence[Path],
                  rows: Sequence[Mapping[str, Any]], image_columns: Sequence[str], score_columns: Sequence[str],
                  thumbnail_size: int = 128, descriptions: Mapping[str, str] | None = None) -> str:
    """``rows`` hold an ``id``, image paths under ``image_columns`` and numbers under ``score_columns``;
    ``descriptions`` says in words what each metric compares."""
    descriptions = descriptions or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>", "<h2>Summary</h2><table>",
             "<tr><th>metric</th>" + "".join(f"<th>{html.escape(s)}</th>" for s in ("mean", "std", "min", "max", "n"))
             + "<th>what it measures</th></tr>"]
    for metric, stats in summary.items():
        parts.append(f"<tr><td class='id'>{html.escape(metric)}</td>"
                     + "".join(_cell(stats.get(s)) for s in ("mean", "std", "min", "max", "n"))
                     + f"<td class='id'>{html.escape(descriptions.get(metric, ''))}</td></tr>")
    parts.append("</table><h2>Plots</h2>")
    parts += [f"<img alt='{html.escape(p.stem)}' src='{file_data_uri(p)}'>" for p in plots]
    parts.append("<h2>Triples</h2><table><tr><th>id</th>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in [*image_columns, *score_columns]) + "</tr>")
    for row in rows:
        cells = [f"<td class='id'>{html.escape(str(row['id']))}</td>"]
        for column in image_columns:
            uri = image_data_uri(open_image(row[column]), thumbnail_size)
            cells.append(f"<td><img class='thumb' alt='{html.escape(column)}' src='{uri}'></td>")
        cells += [_cell(row.get(c)) for c in score_columns]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
