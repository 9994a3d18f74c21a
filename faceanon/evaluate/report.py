"""Report files: faces.csv, images.csv, summary.json and a self-contained report.html (plots and thumbnails
embedded as base64 PNGs, no external resources)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .harness import FACE_FIELDS, IMAGE_FIELDS, EvaluationResult

REPORT_VERSION = 1

# (summary key, column title, format): the text table, the HTML table and docs/evaluation.md share it.
TABLE_COLUMNS = [
    ("n_images_evaluated", "images", "{:d}"),
    ("n_faces", "faces", "{:d}"),
    ("reid_rate", "re-ID (dlib d<0.6) ↓", "pct"),
    ("reid_top1_rate", "top-1 re-ID ↓", "pct"),
    ("id_distance_mean", "ID dist ↑", "{:.3f}"),
    ("det_recall", "det. recall ↑", "pct"),
    ("mesh_found_rate", "mesh found ↑", "pct"),
    ("pose_diff_deg_mean", "pose Δ° ↓", "{:.2f}"),
    ("gaze_diff_mean", "gaze Δ ↓", "{:.3f}"),
    ("expr_diff_mean", "expr Δ ↓", "{:.3f}"),
    ("bg_psnr_db_mean", "bg PSNR dB ↑", "{:.1f}"),
    ("bg_ssim_mean", "bg SSIM ↑", "{:.4f}"),
    ("sharpness_ratio_median", "sharpness ratio", "{:.2f}"),
]


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if fmt == "pct":
        return f"{100 * value:.1f} %"
    return fmt.format(value)


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method"] + [title for _, title, _ in TABLE_COLUMNS]
    rows = []
    for name, entry in summary["methods"].items():
        rows.append([name] + [_fmt(entry.get(key), fmt) for key, _, fmt in TABLE_COLUMNS])
    return header, rows


def markdown_table(summary: dict) -> str:
    header, rows = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _clean(value):
    """JSON/CSV-safe value: NaN/inf -> None, numpy scalars -> Python, floats rounded to 6 decimals."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if (v := _clean(row.get(k))) is None else v) for k in fields})


def summary_json(result: EvaluationResult) -> dict:
    return _clean({
        "report_version": REPORT_VERSION,
        **result.summary,
        "problems": [{"method": r["method"], "image": r["image"], "status": r["status"], "message": r["message"]}
                     for r in result.problems()],
        "warnings": result.warnings,
    })


def write_report(result: EvaluationResult, out_dir: Path) -> dict[str, Path]:
    """Write faces.csv, images.csv, summary.json and report.html into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "faces_csv": out_dir / "faces.csv",
        "images_csv": out_dir / "images.csv",
        "summary_json": out_dir / "summary.json",
        "html": out_dir / "report.html",
    }
    write_csv(paths["faces_csv"], result.faces, FACE_FIELDS)
    write_csv(paths["images_csv"], result.images, IMAGE_FIELDS)
    with open(paths["summary_json"], "w", encoding="utf-8") as f:
        json.dump(summary_json(result), f, indent=2, allow_nan=False, ensure_ascii=False)
    paths["html"].write_text(render_html(result), encoding="utf-8")
    return paths


# -- images -------------------------------------------------------------------------------------------------------
def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _spread(n: int, width: float = 0.25) -> np.ndarray:
    """Deterministic horizontal offsets for a strip plot."""
    return np.linspace(-width, width, n) if n > 1 else np.zeros(n)


def plots(result: EvaluationResult) -> list[tuple[str, bytes]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.name for m in result.methods]
    by_method = {n: [r for r in result.faces if r["method"] == n] for n in names}
    colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    figs = []
    thr = result.settings.threshold
    gen, imp = result.summary["reference_ranges"]["genuine"], result.summary["reference_ranges"]["impostor"]

    # 1. identity distance per method
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names) + 2), 3.6))
    ax.axhspan(*gen, color="tab:red", alpha=0.12, label="same person, other photo (offline set)")
    ax.axhspan(*imp, color="tab:green", alpha=0.10, label="different people (offline set)")
    ax.axhline(thr, color="k", ls="--", lw=1, label=f"dlib threshold {thr:g}")
    data = [_finite(r["id_distance"] for r in by_method[n]) for n in names]
    if any(data):
        ax.boxplot([d if d else [np.nan] for d in data], positions=range(len(names)), widths=0.5,
                   showfliers=False)
    for i, (n, d) in enumerate(zip(names, data, strict=True)):
        ax.scatter(i + _spread(len(d)), d, s=14, color=colors[n], zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("dlib distance to the original face")
    ax.set_title("Identity distance (higher = more anonymous; below the line = re-identified)")
    ax.legend(fontsize=7, loc="best")
    figs.append(("Identity distance per face", _fig_png(fig)))

    # 2. attribute differences
    keys = [("pose_diff_deg", "pose Δ (deg)"), ("gaze_diff", "gaze Δ (eye widths)"), ("expr_diff", "expression Δ")]
    fig, axes = plt.subplots(1, 3, figsize=(max(9, 2.2 * len(names) + 4), 3.4))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for i, n in enumerate(names):
            d = _finite(r[key] for r in by_method[n])
            ax.scatter(i + _spread(len(d)), d, s=14, color=colors[n])
            if d:
                ax.hlines(np.median(d), i - 0.3, i + 0.3, color="k", lw=1.5)
            # how many faces the numbers rest on (the rest: no mesh found in the result)
            ax.text(i, 1.0, f"n={len(d)}/{len(by_method[n])}", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(label + "  (lower = kept)", fontsize=9)
    fig.suptitle("Attribute differences (faces where the mesh found no face in the result are left out)",
                 fontsize=9)
    figs.append(("Attribute differences per face", _fig_png(fig)))

    # 3. privacy vs utility
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes[:2], [("pose_diff_deg", "pose Δ (deg)"), ("expr_diff", "expression Δ")],
                                strict=True):
        for n in names:
            pts = [(r["id_distance"], r[key]) for r in by_method[n]
                   if math.isfinite(r["id_distance"]) and r[key] is not None and math.isfinite(r[key])]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.scatter(x, y, s=16, color=colors[n], label=n)
        ax.axvline(thr, color="k", ls="--", lw=1)
        ax.set_xlabel("identity distance (→ more private)")
        ax.set_ylabel(label + " (↓ more useful)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no face with a mesh in both images", ha="center", transform=ax.transAxes)
    ax = axes[2]
    placed: dict[tuple[int, int], int] = {}
    for n in names:
        e = result.summary["methods"][n]
        if e["reid_rate"] is None:
            continue
        x, y = 100 * e["reid_rate"], 100 * (e["det_recall"] or 0)
        k = placed.get((round(x), round(y)), 0)
        placed[(round(x), round(y))] = k + 1
        ax.scatter(x, y, s=40, color=colors[n])
        ax.annotate(n, (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4 + 10 * k))
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("re-ID rate % (← more private)")
    ax.set_ylabel("faces still detected % (↑ still a face)")
    fig.suptitle("Privacy vs utility (ideal: right/bottom on the left plots, top-left on the right one)",
                 fontsize=9)
    figs.append(("Privacy vs utility", _fig_png(fig)))
    return figs


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.thumbs td{text-align:center;vertical-align:top;font-size:11px}
.problem{color:#a00}
"""


def render_html(result: EvaluationResult) -> str:
    s = result.summary
    header, rows = table_rows(s)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>FaceAnon evaluation</title>",
             f"<style>{_CSS}</style></head><body>", "<h1>FaceAnon evaluation report</h1>"]
    parts.append(
        f"<p>Re-identification: dlib 128-D ResNet (independent of the ArcFace used for conditioning), descriptor "
        f"taken inside the original face's box in both images; re-identified when the distance is below "
        f"{s['threshold']:g}. Top-1: nearest of the {s['gallery_size']} original faces of this run is the same "
        f"identity (chance level {100 * s['reid_top1_chance']:.1f} %). Pose, gaze and expression: mediapipe "
        "0.10.21 face mesh. Background: outside the face boxes scaled by 1.6.</p>")
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for r in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    parts.append("</table>")
    parts.append("<ul>" + "".join(
        f"<li><b>{html.escape(m.name)}</b>: {html.escape(m.description)}</li>" for m in result.methods) + "</ul>")
    problems = result.problems()
    if problems or result.warnings:
        parts.append("<h2>Problems</h2><ul class='problem'>")
        for w in result.warnings:
            parts.append(f"<li>{html.escape(w)}</li>")
        for p in problems:
            parts.append(f"<li>{html.escape(p['method'])} / {html.escape(p['image'])}: {html.escape(p['status'])}"
                         f" – {html.escape(p['message'])}</li>")
        parts.append("</ul>")
    for title, png in plots(result):
        parts.append(f"<h2>{html.escape(title)}</h2>{_img_tag(png, title)}")
    if result.thumbnails:
        parts.append("<h2>Before / after</h2><p>Boxes: faces found in the original (numbered); on the results, "
                     "the dlib distance to the original face, red when re-identified (below the threshold), green "
                     "when not.</p><table class='thumbs'>")
        for t in result.thumbnails:
            cells = "".join(f"<td>{_img_tag(tile['png'], t['image'] + ' ' + tile['label'])}<br>"
                            f"<b>{html.escape(tile['label'])}</b><br>{html.escape(tile['caption'])}</td>"
                            for tile in t["tiles"])
            parts.append(f"<tr><td>{html.escape(t['image'])}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
