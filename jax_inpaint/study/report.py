"""The report of `jax-inpaint evaluate`: numbers as CSV and JSON, plots as PNG, one self-contained HTML page.

`write_report(out, rows, meta, tiles=)` writes into the evaluation folder `out`:

  results.csv, results.json   every row (one per case and method; schema in jax_inpaint.study.records)
  summary.csv                 per family, ratio and series: mean, standard deviation over the targets, count
  plots/<metric>.png          hole PSNR, hole SSIM, hole LPIPS, LPIPS against the hole ratio, one panel per
                              family: the GAN's best of K and mean of K beside each baseline (bands: +- 1 std)
  plots/advantage.png         per family and ratio, the GAN (mean of K) minus the best baseline, in hole
                              LPIPS and hole PSNR, signed so that > 0 (green) means the GAN is better
  plots/overview.png          bars per family (averaged over ratios) for every series
  plots/gan.png               GAN only: diversity, known-region PSNR and seconds per case against the ratio
  samples/<family>.png        the case pictures of the first targets, one row per (target, ratio)
  report.html                 all of the above with tables per family and the hardest cases; every
                              picture is embedded (base64), so the file can be mailed on its own

A series is what a line in a plot or a row in a table shows: 'gan_best' (per case the best of the K
completions, an oracle pick), 'gan_mean' (the average completion: the fair comparison with a baseline,
which fills one image) and one per baseline.
"""
from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import math
import os
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from jax_inpaint import files as fileio
from jax_inpaint import images as imio
from jax_inpaint.study.pictures import picture_tiles
from jax_inpaint.study.records import COLUMNS, HIGHER_IS_BETTER, METRICS, write_json

LABELS = {"psnr_hole": "hole PSNR (dB)", "ssim_hole": "hole SSIM", "lpips_hole": "hole LPIPS",
          "lpips": "LPIPS (whole image)", "psnr_known": "known-region PSNR (dB)", "diversity": "diversity (LPIPS)",
          "seconds": "seconds per case", "constraint_success_rate": "constraints met"}
GAN_EXTRA = ("psnr_known", "diversity", "constraint_success_rate", "seconds")
_COLOURS = {"gan_best": "#1f5fbf", "gan_mean": "#1f5fbf", "mean": "#8c8c8c", "biharmonic": "#2ca02c",
            "telea": "#d62728"}
SAMPLE_TARGETS = 3  # targets per family shown in samples/<family>.png and the HTML
HARDEST = 6  # cases listed per ranking


def series_of(methods: Sequence[str]) -> list[str]:
    return ["gan_best", "gan_mean"] + [m for m in methods if m != "gan"]


def series_label(s: str) -> str:
    return {"gan_best": "GAN, best of K", "gan_mean": "GAN, mean of K"}.get(s, s)


def _value(row: Mapping, s: str, metric: str):
    """The value a series shows for a metric: *_best for gan_best, *_mean otherwise, or the plain column."""
    if metric in METRICS:
        return row.get(f"{metric}_best" if s == "gan_best" else f"{metric}_mean")
    return row.get(metric)


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------
# Numbers.

def summarise(rows: Sequence[Mapping]) -> list[dict]:
    """Mean / std / count over the targets, per (family, ratio, series), in the rows' order."""
    groups: dict[tuple, list] = defaultdict(list)
    order = []
    for r in rows:
        ss = ["gan_best", "gan_mean"] if r["method"] == "gan" else [r["method"]]
        for s in ss:
            key = (r["family"], r["ratio"], s)
            if key not in groups:
                order.append(key)
            groups[key].append(r)
    out = []
    for key in order:
        fam, ratio, s = key
        rs = groups[key]
        entry = {"family": fam, "ratio": ratio, "series": s, "n": len(rs),
                 "hole_ratio": float(np.mean([r["hole_ratio"] for r in rs]))}
        names = list(METRICS) + ([m for m in GAN_EXTRA if m != "seconds"] if s.startswith("gan") else []) + ["seconds"]
        for m in names:
            use = rs
            if m == "seconds" and not all(r.get("includes_compile") for r in rs):
                use = [r for r in rs if not r.get("includes_compile")]
            vals = [v for v in (_value(r, s, m) for r in use) if _finite(v)]
            if vals:
                entry[m] = float(np.mean(vals))
                entry[f"{m}_std"] = float(np.std(vals))
        out.append(entry)
    return out


def write_csv(path: str, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else _csv_value(r.get(k)) for k in columns})
    fileio.write_text(path, buf.getvalue())


def _csv_value(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    return v


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: no pyplot state).

def _figure(nplots: int, *, width: float = 3.6, height: float = 3.0, max_cols: int = 4, sharey: bool = False):
    from matplotlib.figure import Figure

    ncols = min(nplots, max_cols)
    nrows = -(-nplots // ncols)
    fig = Figure(figsize=(width * ncols + 0.6, height * nrows + 0.9), dpi=110)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    for ax in axes.flat[nplots:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:nplots])


def _save(fig, path: str) -> None:
    fileio.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")


def _by(summary, family, series):
    return sorted((e for e in summary if e["family"] == family and e["series"] == series), key=lambda e: e["ratio"])


def _style(s: str) -> dict:
    return {"color": _COLOURS.get(s, "#9467bd"), "linestyle": "--" if s == "gan_mean" else "-",
            "marker": "o" if s.startswith("gan") else "s", "linewidth": 2.0 if s.startswith("gan") else 1.4,
            "markersize": 5}


def plot_metric(summary: Sequence[Mapping], metric: str, families: Sequence[str], series: Sequence[str],
                path: str) -> None:
    """metric against the hole ratio, one panel per family (one y scale, to compare them), every series,
    +- 1 std bands."""
    fig, axes = _figure(len(families), sharey=True)
    arrow = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
    for ax, fam in zip(axes, families):
        for s in series:
            es = [e for e in _by(summary, fam, s) if metric in e]
            if not es:
                continue
            x = np.array([e["hole_ratio"] for e in es]) * 100
            y = np.array([e[metric] for e in es])
            sd = np.array([e[f"{metric}_std"] for e in es])
            ax.plot(x, y, label=series_label(s), **_style(s))
            ax.fill_between(x, y - sd, y + sd, color=_style(s)["color"], alpha=0.10 if s.startswith("gan") else 0.07,
                            linewidth=0)
        ax.set_title(fam)
        ax.set_xlabel("hole (% of the image)")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(LABELS[metric])
    for ax in axes:
        ax.yaxis.set_tick_params(labelleft=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9, handlelength=3.5)
    fig.suptitle(f"{LABELS[metric]} ({arrow}) against the hole size", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def _grid_values(summary, families, ratios, metric, baselines, series: str = "gan_mean"):
    """[F, R] the GAN series minus the best baseline, signed so that > 0 = GAN better (NaN: no case)."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    d = np.full((len(families), len(ratios)), np.nan)
    for i, fam in enumerate(families):
        for j, r in enumerate(ratios):
            cell = {e["series"]: e.get(metric) for e in summary if e["family"] == fam and e["ratio"] == r}
            base = [cell[b] for b in baselines if _finite(cell.get(b))]
            if _finite(cell.get(series)) and base:
                best = max(base) if HIGHER_IS_BETTER[metric] else min(base)
                d[i, j] = sign * (cell[series] - best)
    return d


def verdict(summary, families, ratios, baselines) -> list[str]:
    """Where the GAN beats the best baseline of the same (family, ratio): one line per GAN series."""
    if not baselines:
        return []
    out = []
    for series, who in (("gan_mean", "typical completion (mean of K)"), ("gan_best", "best of K")):
        parts = []
        for metric in ("lpips_hole", "psnr_hole"):
            d = _grid_values(summary, families, ratios, metric, baselines, series)
            n = int(np.isfinite(d).sum())
            wins = [f"{families[i]} {ratios[j]:g}" for i, j in zip(*np.nonzero(np.nan_to_num(d, nan=-1.0) > 0))]
            text = f"better {LABELS[metric].replace(' (dB)', '')} in {len(wins)} of {n} cells"
            if wins and len(wins) < n:
                text += f" ({', '.join(wins)})"
            parts.append(text)
        out.append(f"GAN, {who}: {'; '.join(parts)}")
    return out


def plot_advantage(summary, families, ratios, baselines, path: str) -> None:
    """Heat maps family x ratio of the GAN's advantage over the best baseline (hole LPIPS, hole PSNR)."""
    fig, axes = _figure(2, width=max(3.6, 1.0 + 0.9 * len(ratios)), height=0.6 + 0.45 * len(families), max_cols=2)
    for ax, metric in zip(axes, ("lpips_hole", "psnr_hole")):
        d = _grid_values(summary, families, ratios, metric, baselines)
        lim = np.nanmax(np.abs(d)) if np.isfinite(d).any() else 1.0
        im = ax.imshow(np.ma.masked_invalid(d), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_facecolor("#eeeeee")
        ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        ax.set_yticks(range(len(families)), families)
        ax.set_xlabel("hole ratio")
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                text = "-" if not np.isfinite(d[i, j]) else f"{d[i, j]:+.3f}" if metric != "psnr_hole" else \
                    f"{d[i, j]:+.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
        unit = " dB" if metric == "psnr_hole" else ""
        ax.set_title(f"{LABELS[metric]}: GAN better by{unit}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("GAN (mean of K) against the best baseline of each cell: > 0 (green) = the GAN prior helps",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_overview(summary, families, series, path: str) -> None:
    """Bars per family, averaged over its ratios: hole LPIPS and hole PSNR of every series."""
    fig, axes = _figure(2, width=max(4.0, 1.2 * len(families) * max(1, len(series)) / 2.5), max_cols=2)
    width = 0.8 / len(series)
    for ax, metric in zip(axes, ("lpips_hole", "psnr_hole")):
        for k, s in enumerate(series):
            vals = []
            for fam in families:
                v = [e[metric] for e in _by(summary, fam, s) if metric in e]
                vals.append(np.mean(v) if v else np.nan)
            st = _style(s)
            ax.bar(np.arange(len(families)) + (k - (len(series) - 1) / 2) * width, vals, width, label=series_label(s),
                   color=st["color"], alpha=0.55 if s == "gan_mean" else 0.9,
                   hatch="//" if s == "gan_mean" else None, edgecolor="white")
        ax.set_xticks(range(len(families)), families, rotation=20)
        arrow = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
        ax.set_title(f"{LABELS[metric]} ({arrow})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    fig.suptitle("Averaged over the hole ratios of each family", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, path)


def plot_gan(summary, families, path: str) -> list[str]:
    """GAN only: diversity, known-region PSNR, seconds (and constraints met) against the ratio, per family."""
    metrics = [m for m in ("diversity", "psnr_known", "constraint_success_rate", "seconds")
               if any(m in e for e in summary if e["series"] == "gan_mean")]
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        for k, fam in enumerate(families):
            es = [e for e in _by(summary, fam, "gan_mean") if metric in e]
            if es:
                ax.plot([e["hole_ratio"] * 100 for e in es], [e[metric] for e in es], marker="o", color=f"C{k}",
                        label=fam)
        note = {"diversity": " (how different the K are)", "seconds": " (first case of a run left out)"}
        ax.set_title(LABELS[metric] + note.get(metric, " (higher is better)"), fontsize=10)
        ax.set_xlabel("hole (% of the image)")
        ax.set_xlim(0, 100)
        if metric in ("diversity", "seconds", "constraint_success_rate"):
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    fig.suptitle("The GAN's completions: spread between seeds, faithfulness to the known pixels, cost", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, path)
    return metrics


# ---------------------------------------------------------------------------------------------
# Pictures.

def _caption_strip(text: str, width: int, height: int = 16) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), (235, 235, 235))
    ImageDraw.Draw(im).text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(im)


def family_samples(out: str, gan_rows: Sequence[Mapping], path: str) -> list[Mapping]:
    """Stack the pictures of the first SAMPLE_TARGETS targets of one family (all its ratios) into one PNG."""
    from PIL import Image

    names = list(dict.fromkeys(r["target"] for r in gan_rows))[:SAMPLE_TARGETS]
    chosen = sorted((r for r in gan_rows if r["target"] in names), key=lambda r: (names.index(r["target"]), r["ratio"]))
    parts = []
    for r in chosen:
        pic = np.asarray(Image.open(os.path.join(out, r["grid"])).convert("RGB"))
        parts.append(_caption_strip(f"{r['target']}   ratio {r['ratio']:g} (hole {100 * r['hole_ratio']:.1f} %)   "
                                    f"GAN best of K: {r['psnr_hole_best']:.1f} dB, LPIPS {r['lpips_hole_best']:.3f}",
                                    pic.shape[1]))
        parts.append(pic)
    if parts:
        width = max(p.shape[1] for p in parts)
        parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in parts]
        imio.save_png(path, np.concatenate(parts))
    return chosen


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _jpeg_uri(img: np.ndarray, size: int = 128) -> str:
    from PIL import Image

    im = Image.fromarray(imio.display_tile(img, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return _data_uri(buf.getvalue(), "image/jpeg")


def _png_uri(path: str) -> str:
    with open(path, "rb") as f:
        return _data_uri(f.read(), "image/png")


# ---------------------------------------------------------------------------------------------
# HTML.

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1400px;
       color: #222; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 2px solid #ddd; }
h3 { margin-top: 24px; }
.meta td { padding: 1px 12px 1px 0; vertical-align: top; } .meta td:first-child { color: #666; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 12px; }
.help { background: #f4f7fb; border-left: 4px solid #1f5fbf; padding: 6px 12px; font-size: 0.93em; }
img.plot { max-width: 100%; display: block; margin: 8px 0; }
table.num { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
table.num th, table.num td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.num th { background: #f3f3f3; } table.num td.l { text-align: left; }
tr.oracle td { color: #777; font-style: italic; } td.best { font-weight: bold; background: #e8f5e9; }
.std { color: #888; font-size: 0.85em; }
.case { margin: 10px 0 18px; } .case .cap { font-size: 0.9em; margin-bottom: 3px; }
.tiles { display: flex; flex-wrap: wrap; gap: 4px; }
.tile { text-align: center; font-size: 0.75em; color: #444; }
.tile img { display: block; width: 128px; height: 128px; image-rendering: auto; border: 1px solid #ccc; }
.tile.gt img { border-color: #222; } .tile.gan img { border-color: #1f5fbf; }
a { color: #1f5fbf; }
"""


def _fmt(metric: str, v) -> str:
    if not _finite(v):
        return "–"
    if metric.startswith("psnr"):
        return f"{v:.2f}"
    if metric == "seconds":
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"
    if metric == "constraint_success_rate":
        return f"{100 * v:.0f} %"
    return f"{v:.3f}"


def _cell(e: Mapping, metric: str, best: bool) -> str:
    v = e.get(metric)
    sd = e.get(f"{metric}_std")
    text = _fmt(metric, v)
    if _finite(v) and _finite(sd) and e["n"] > 1:
        text += f' <span class="std">± {_fmt(metric, sd)}</span>'
    return f'<td class="{"best" if best else ""}">{text}</td>'


def family_table(summary: Sequence[Mapping], family: str, series: Sequence[str]) -> str:
    cols = list(METRICS) + [m for m in GAN_EXTRA if any(m in e for e in summary if e["family"] == family)]
    head = "".join(f"<th>{html.escape(LABELS[m])} {'↑' if HIGHER_IS_BETTER[m] else '↓'}</th>" for m in cols)
    out = [f'<table class="num"><tr><th>ratio</th><th>hole</th><th>n</th><th>method</th>{head}</tr>']
    ratios = sorted({e["ratio"] for e in summary if e["family"] == family})
    for r in ratios:
        es = {e["series"]: e for e in summary if e["family"] == family and e["ratio"] == r}
        present = [s for s in series if s in es]
        best = {}
        for m in METRICS:  # the best single-image method (the best-of-K oracle is not in the running)
            cand = [(es[s][m], s) for s in present if s != "gan_best" and _finite(es[s].get(m))]
            if len(cand) > 1:
                best[m] = (max if HIGHER_IS_BETTER[m] else min)(cand)[1]
        for i, s in enumerate(present):
            e = es[s]
            lead = (f'<td rowspan="{len(present)}">{r:g}</td><td rowspan="{len(present)}">'
                    f'{100 * e["hole_ratio"]:.1f} %</td><td rowspan="{len(present)}">{e["n"]}</td>') if i == 0 else ""
            cells = "".join(_cell(e, m, best.get(m) == s) for m in cols)
            cls = ' class="oracle"' if s == "gan_best" else ""
            out.append(f'<tr{cls}>{lead}<td class="l">{html.escape(series_label(s))}</td>{cells}</tr>')
    out.append("</table>")
    return "\n".join(out)


def _case_html(out: str, row: Mapping, tiles: Sequence[Mapping], caption: str) -> str:
    from PIL import Image

    path = os.path.join(out, row["grid"])
    if not os.path.isfile(path) or not tiles:
        return f'<div class="case"><div class="cap">{caption} (picture missing)</div></div>'
    pic = np.asarray(Image.open(path).convert("RGB"))
    parts = []
    for t, img in zip(tiles, picture_tiles(pic, len(tiles))):
        kind = "gt" if t["label"] == "ground truth" else "gan" if t.get("method") == "gan" else ""
        sub = "" if t.get("method") is None else \
            f'<br>{t["psnr_hole"]:.1f} dB · LPIPS {t["lpips_hole"]:.3f}'
        parts.append(f'<div class="tile {kind}"><img src="{_jpeg_uri(img)}" alt="{html.escape(t["label"])}">'
                     f'{html.escape(t["label"])}{sub}</div>')
    return f'<div class="case"><div class="cap">{caption}</div><div class="tiles">{"".join(parts)}</div></div>'


def _case_caption(r: Mapping) -> str:
    return (f'<b>{html.escape(r["target"])}</b> · {html.escape(r["family"])} · ratio {r["ratio"]:g} '
            f'(hole {100 * r["hole_ratio"]:.1f} %) · GAN best of K: {r["psnr_hole_best"]:.2f} dB, '
            f'hole LPIPS {r["lpips_hole_best"]:.3f}; mean of K: {r["psnr_hole_mean"]:.2f} dB, '
            f'{r["lpips_hole_mean"]:.3f}')


def _options_text(meta: Mapping) -> str:
    changed = {k: v for k, v in meta["config"].items() if meta["defaults"].get(k) != v}
    text = ", ".join(f"{k}={v}" for k, v in changed.items()) or "the defaults"
    return text


def write_html(path: str, out: str, meta: Mapping, rows: Sequence[Mapping], summary: Sequence[Mapping],
               plots: Mapping[str, str], tiles: Mapping[str, Sequence[Mapping]]) -> None:
    fams, methods = meta["families"], meta["baselines"]
    series = series_of(methods)
    gan_rows = [r for r in rows if r["method"] == "gan"]
    t = meta["targets"]
    targets = (f"{meta['n_targets']} images" if t["kind"] == "images" else
               f"{meta['n_targets']} samples of the generator (truncation psi {t['truncation_psi']:g}; their exact "
               "completion is in the search space)")
    secs = [r["seconds"] for r in gan_rows if _finite(r.get("seconds")) and not r.get("includes_compile")]
    constraints = ", ".join([f'"{p}"' + (f" x{w:g}" if w != 1 else "") for p, w in meta["prompts"]]
                            + [f"{k}={v:g}" for k, v in meta["attributes"].items()]) or "none"
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>jax-inpaint evaluation</title>"
         f"<style>{_CSS}</style></head><body>",
         "<h1>How robust is the inpainting?</h1>",
         f"<p>jax-inpaint evaluate · {datetime.datetime.now():%Y-%m-%d %H:%M}</p>",
         '<table class="meta">',
         f"<tr><td>generator</td><td>{html.escape(str(meta['generator']))} ({meta['resolution']} px)</td></tr>",
         f"<tr><td>targets</td><td>{html.escape(targets)}</td></tr>",
         f"<tr><td>cases</td><td>{meta['n_cases']} (target × mask family × hole ratio): {meta['computed']} "
         f"computed by this run, {meta['reused']} reused from earlier runs</td></tr>",
         f"<tr><td>mask families</td><td>{html.escape(', '.join(fams))}; hole ratios "
         f"{', '.join(f'{r:g}' for r in meta['ratios'])}; mask seed {meta['mask_seed']}</td></tr>",
         f"<tr><td>GAN</td><td>K = {len(meta['seeds'])} completions per case (seeds "
         f"{html.escape(_seed_text(meta['seeds']))}); options: {html.escape(_options_text(meta))}; "
         f"constraints: {html.escape(constraints)}</td></tr>",
         f"<tr><td>baselines</td><td>{html.escape(', '.join(methods) or 'none')}</td></tr>",
         f"<tr><td>time</td><td>GAN: median {_fmt('seconds', np.median(secs) if secs else None)} s per case "
         f"(not counting the first case of a run, which includes compiling)</td></tr>",
         "</table>"]
    if meta["notes"]:
        h.append('<div class="notes"><b>Notes</b><ul>' + "".join(f"<li>{html.escape(n)}</li>" for n in meta["notes"])
                 + "</ul></div>")
    h.append('<div class="help"><b>Reading it.</b> Every case is one ground-truth image with one hole, filled '
             "K times by the GAN (one latent search per seed) and once by each classical baseline. "
             "<b>Hole PSNR / SSIM</b> (higher is better) compare the filled hole with the truth pixel by pixel; "
             "<b>hole LPIPS</b> (lower is better) compares it perceptually (both images multiplied by the hole "
             "mask); <b>LPIPS</b> is the whole image. <b>Best of K</b> takes, per case, the best of the K "
             "completions (what a user who picks one gets: an oracle); <b>mean of K</b> is a typical completion "
             "and the fair comparison with a baseline. Pixel metrics favour blurry averages such as the "
             "baselines' fills for large holes; LPIPS rewards plausible texture. <b>Known-region PSNR</b> says "
             "how faithfully the generator reproduces the given pixels, <b>diversity</b> how different the K "
             "completions are inside the hole. Plots show the mean over the targets with ± 1 standard "
             "deviation bands; tables give mean ± std, the best single-image method in bold.</div>")
    h.append("<h2>Overview</h2>")
    said = verdict(summary, fams, [r for r in meta["ratios"] if any(e["ratio"] == r for e in summary)], methods)
    if said:
        h.append("<p>Where the GAN prior helps: compared with the best baseline of the same family and hole ratio "
                 "(a cell):</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in said) + "</ul>")
    for key in ("advantage", "overview"):
        if key in plots:
            h.append(f'<img class="plot" src="{_png_uri(plots[key])}" alt="{key}">')
    h.append("<h2>Metrics against the hole size</h2>")
    for m in METRICS:
        h.append(f'<img class="plot" src="{_png_uri(plots[m])}" alt="{m}">')
    if "gan" in plots:
        h.append(f'<img class="plot" src="{_png_uri(plots["gan"])}" alt="gan">')
    h.append("<h2>Per family</h2>")
    for fam in fams:
        fam_rows = [r for r in gan_rows if r["family"] == fam]
        if not fam_rows:
            continue
        h.append(f"<h3>{html.escape(fam)}</h3>")
        h.append(family_table(summary, fam, series))
        names = list(dict.fromkeys(r["target"] for r in fam_rows))[:SAMPLE_TARGETS]
        shown = sorted((r for r in fam_rows if r["target"] in names), key=lambda r: (names.index(r["target"]), r["ratio"]))
        h.append(f"<p>Samples ({len(names)} of {len(set(r['target'] for r in fam_rows))} targets): under each "
                 "picture its hole PSNR and hole LPIPS.</p>")
        for r in shown:
            h.append(_case_html(out, r, tiles.get(r["case"], []), _case_caption(r)))
    h.append("<h2>The hardest cases</h2>")
    rank_psnr = sorted(gan_rows, key=lambda r: r["psnr_hole_best"])[:HARDEST]
    rank_lpips = sorted(gan_rows, key=lambda r: -r["lpips_hole_best"])[:HARDEST]
    for title, ranked in (("lowest hole PSNR (best of K)", rank_psnr), ("highest hole LPIPS (best of K)", rank_lpips)):
        h.append(f"<h3>{title}</h3>")
        h.append('<table class="num"><tr><th>#</th><th>target</th><th>family</th><th>ratio</th><th>hole</th>'
                 "<th>hole PSNR best / mean</th><th>hole LPIPS best / mean</th><th>best baseline PSNR</th></tr>")
        for i, r in enumerate(ranked, 1):
            bases = [b for b in rows if b["case"] == r["case"] and b["method"] != "gan"]
            bb = max((b["psnr_hole_mean"] for b in bases), default=None)
            h.append(f'<tr><td>{i}</td><td class="l">{html.escape(r["target"])}</td><td class="l">'
                     f'{html.escape(r["family"])}</td><td>{r["ratio"]:g}</td><td>{100 * r["hole_ratio"]:.1f} %</td>'
                     f'<td>{r["psnr_hole_best"]:.2f} / {r["psnr_hole_mean"]:.2f}</td>'
                     f'<td>{r["lpips_hole_best"]:.3f} / {r["lpips_hole_mean"]:.3f}</td><td>{_fmt("psnr", bb)}</td></tr>')
        h.append("</table>")
    hardest = list({r["case"]: r for r in rank_psnr[:3] + rank_lpips[:3]}.values())
    for r in hardest:
        h.append(_case_html(out, r, tiles.get(r["case"], []), _case_caption(r)))
    h.append("<h2>Files</h2><p>Beside this page: <code>results.csv</code> and <code>results.json</code> (one row "
             "per case and method), <code>summary.csv</code> (the tables), <code>plots/*.png</code>, "
             "<code>samples/&lt;family&gt;.png</code>, <code>cases/</code> (one JSON record and one picture "
             "per case; a rerun with the same options reuses them).</p></body></html>")
    fileio.write_text(path, "\n".join(h))


def _seed_text(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


# ---------------------------------------------------------------------------------------------
# Everything.

def write_report(out: str, rows: Sequence[Mapping], meta: Mapping[str, Any], *,
                 tiles: Mapping[str, Sequence[Mapping]] | None = None) -> dict[str, str]:
    """Write the CSV/JSON, plots, sample sheets and report.html into `out`; returns {name: path}."""
    tiles = tiles or {}
    files = {}
    extra = [c for c in ("constraint_success_rate", "dropped_seeds", "includes_compile") if any(c in r for r in rows)]
    files["csv"] = os.path.join(out, "results.csv")
    write_csv(files["csv"], rows, list(COLUMNS) + extra)
    summary = summarise(rows)
    files["summary"] = os.path.join(out, "summary.csv")
    cols = ["family", "ratio", "hole_ratio", "series", "n"]
    for m in list(METRICS) + list(GAN_EXTRA):
        if any(m in e for e in summary):
            cols += [m, f"{m}_std"]
    write_csv(files["summary"], summary, cols)
    files["json"] = os.path.join(out, "results.json")
    write_json(files["json"], {"meta": meta, "rows": rows, "summary": summary})

    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    fams = [f for f in meta["families"] if any(r["family"] == f for r in rows)]
    ratios = [r for r in meta["ratios"] if any(e["ratio"] == r for e in summary)]
    series = series_of(meta["baselines"])
    plots = {}
    for m in METRICS:
        plots[m] = os.path.join(out, "plots", f"{m}.png")
        plot_metric(summary, m, fams, series, plots[m])
    if meta["baselines"]:
        plots["advantage"] = os.path.join(out, "plots", "advantage.png")
        plot_advantage(summary, fams, ratios, meta["baselines"], plots["advantage"])
    plots["overview"] = os.path.join(out, "plots", "overview.png")
    plot_overview(summary, fams, series, plots["overview"])
    plots["gan"] = os.path.join(out, "plots", "gan.png")
    plot_gan(summary, fams, plots["gan"])
    files.update({f"plot_{k}": v for k, v in plots.items()})

    os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    for fam in fams:
        p = os.path.join(out, "samples", f"{fam}.png")
        if family_samples(out, [r for r in rows if r["method"] == "gan" and r["family"] == fam], p):
            files[f"samples_{fam}"] = p
    files["html"] = os.path.join(out, "report.html")
    write_html(files["html"], out, {**meta, "families": fams}, rows, summary, plots, tiles)
    return files
