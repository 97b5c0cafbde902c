"""The demo's self-contained HTML report: inline CSS, an inline SVG timeline, no external resources.

The timeline has one lane per verification mode (oidc, tokenreview, hybrid), each with two rows —
the token bound to the pod that gets deleted and the token signed by the key that gets revoked —
and one mark per check: green accepted, red rejected, grey "could not check". Dashed vertical lines
mark "pod deleted", "key rotated" and "key revoked". Everything is escaped; no token is included.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any, Final

from issuer.demo_result import MODES, TOKENS, DemoResult

__all__ = ["COLORS", "render_html", "render_svg"]

#: Mark colours (also asserted by the screenshot test).
COLORS: Final = {
    "accepted": "#1f9d55",
    "rejected": "#e03131",
    "unavailable": "#9aa0a6",
}
_MARKER_COLORS: Final = {
    "pod deleted": "#7048e8",
    "key rotated": "#1c7ed6",
    "key revoked": "#e8590c",
}
_MODE_TITLES: Final = {
    "oidc": ("OIDC (offline)", "discovery + JWKS, cached"),
    "tokenreview": ("TokenReview", "asks the issuer every check"),
    "hybrid": ("Hybrid", "offline + invalidation stream"),
}
_TOKEN_TITLES: Final = {"pod": "pod token", "key": "key token"}

_CSS: Final = """
:root { --fg:#1d2330; --muted:#5c6577; --line:#e3e7ee; --bg:#f6f8fb; --card:#ffffff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 16px; margin: 28px 0 10px; color: var(--fg); }
.sub { color: var(--muted); margin: 0 0 18px; font-size: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 16px; box-shadow: 0 1px 2px rgba(20,30,50,.04); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 8px 10px; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  font-weight: 600; }
tr:last-child td { border-bottom: none; }
.mode { font-weight: 600; }
.mode small { display:block; font-weight: 400; color: var(--muted); font-size: 12px; }
.pill { display:inline-block; padding: 2px 9px; border-radius: 999px; font-size: 13px;
  font-weight: 600; white-space: nowrap; }
.ok { background: #e6f6ec; color: #14713d; }
.bad { background: #fdecec; color: #b42323; }
.na { background: #eef0f3; color: var(--muted); }
.legend { display:flex; gap: 20px; flex-wrap: wrap; margin: 10px 2px 0; color: var(--muted);
  font-size: 13px; align-items: center; }
.sw { display:inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }
.dash { display:inline-block; width: 18px; height: 0; border-top: 2px dashed #7048e8;
  margin-right: 6px; vertical-align: 3px; }
svg { display:block; width: 100%; height: auto; }
.notes { color: var(--muted); font-size: 13px; margin-top: 14px; }
.notes li { margin: 3px 0; }
"""

# Timeline geometry (SVG user units).
_W: Final = 1040
_LEFT: Final = 290
_RIGHT: Final = 20
_TOP: Final = 44
_ROW_H: Final = 20
_ROW_GAP: Final = 8
_LANE_PAD: Final = 12
_LANE_GAP: Final = 10


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _secs(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f} s" if v < 10 else f"{v:.1f} s")


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pill(v: float | None, *, applicable: bool = True) -> str:
    if not applicable:
        return '<span class="pill na">not run</span>'
    if v is None:
        return '<span class="pill bad">still accepted</span>'
    return f'<span class="pill ok">rejected after {_esc(_secs(v))}</span>'


def _tick_step(duration: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300):
        if duration / step <= 14:
            return float(step)
    return 600.0


#: Which event each token row measures.
_ROW_EVENT: Final = {"pod": "pod deleted", "key": "key revoked"}


def _delay_badge(
    result: DemoResult, mode: str, tok: str, ry: float, x: Callable[[float], float]
) -> str:
    """A small label on a row: "+0.05 s" just after the event, or "still accepted" at the end."""
    event = _ROW_EVENT.get(tok)
    if event is None or event not in result.markers:
        return ""
    delay = result.first_rejection(mode, tok, event)
    if delay is None:
        text, color, bx = "still accepted", COLORS["accepted"], x(result.duration_s) - 104
    else:
        text, color = f"+{_secs(delay)}", COLORS["rejected"]
        bx = x(result.markers[event] + delay) + 8
    w = 12 + 6.6 * len(text)
    return (
        f'<rect x="{bx:.1f}" y="{ry + 1}" width="{w:.1f}" height="{_ROW_H - 2}" rx="9" '
        f'fill="#ffffff" stroke="{color}" stroke-width="1.5"/>'
        f'<text x="{bx + w / 2:.1f}" y="{ry + _ROW_H / 2 + 4}" font-size="11.5" '
        f'font-weight="700" text-anchor="middle" fill="{color}">{_esc(text)}</text>'
    )


def render_svg(result: DemoResult) -> str:
    """The timeline as an inline SVG element."""
    lane_h = 2 * _LANE_PAD + len(TOKENS) * _ROW_H + (len(TOKENS) - 1) * _ROW_GAP
    height = _TOP + len(MODES) * (lane_h + _LANE_GAP) + 34
    span = max(result.duration_s, 1e-6)
    plot_w = _W - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + max(0.0, min(1.0, t / span)) * plot_w

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" '
        f'role="img" aria-label="Timeline of accepted and rejected checks per mode" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif">'
    ]
    # Lanes, labels and marks.
    mark_w = max(1.5, min(4.0, plot_w / max(1.0, span * result.rate_hz) * 0.7))
    for i, mode in enumerate(MODES):
        y0 = _TOP + i * (lane_h + _LANE_GAP)
        fill = "#ffffff" if i % 2 == 0 else "#fbfcfe"
        out.append(
            f'<rect x="4" y="{y0}" width="{_W - 8}" height="{lane_h}" rx="8" fill="{fill}" '
            f'stroke="#e3e7ee"/>'
        )
        title, sub = _MODE_TITLES.get(mode, (mode, ""))
        out.append(
            f'<text x="20" y="{y0 + lane_h / 2 - 3}" font-size="15" font-weight="600" '
            f'fill="#1d2330">{_esc(title)}</text>'
        )
        out.append(
            f'<text x="20" y="{y0 + lane_h / 2 + 14}" font-size="11.5" fill="#5c6577">'
            f"{_esc(sub)}</text>"
        )
        for j, tok in enumerate(TOKENS):
            ry = y0 + _LANE_PAD + j * (_ROW_H + _ROW_GAP)
            out.append(
                f'<text x="{_LEFT - 10}" y="{ry + _ROW_H / 2 + 4}" font-size="12" '
                f'text-anchor="end" fill="#3b4456">{_esc(_TOKEN_TITLES.get(tok, tok))}</text>'
            )
            out.append(
                f'<rect x="{_LEFT}" y="{ry}" width="{plot_w}" height="{_ROW_H}" rx="3" '
                f'fill="#eef1f5"/>'
            )
            marks: list[str] = []
            for s in result.samples.get(mode, []):
                if s.token != tok:
                    continue
                color = COLORS.get(s.outcome, COLORS["unavailable"])
                marks.append(
                    f'<rect x="{x(s.t) - mark_w / 2:.1f}" y="{ry + 3}" width="{mark_w:.1f}" '
                    f'height="{_ROW_H - 6}" rx="1" fill="{color}"/>'
                )
            out.append(f'<g aria-label="{_esc(mode)} {_esc(tok)} checks">{"".join(marks)}</g>')
            out.append(_delay_badge(result, mode, tok, ry, x))
    # Axis.
    axis_y = _TOP + len(MODES) * (lane_h + _LANE_GAP) + 4
    out.append(
        f'<line x1="{_LEFT}" y1="{axis_y}" x2="{_W - _RIGHT}" y2="{axis_y}" stroke="#c5ccd8"/>'
    )
    step = _tick_step(span)
    n = math.floor(span / step + 1e-9)
    for k in range(n + 1):
        t = k * step
        tx = x(t)
        out.append(
            f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 5}" stroke="#8a93a5"/>'
        )
        label = f"{t:g} s"
        out.append(
            f'<text x="{tx:.1f}" y="{axis_y + 19}" font-size="11.5" text-anchor="middle" '
            f'fill="#5c6577">{_esc(label)}</text>'
        )
    # Event markers (drawn last, over the marks).
    for label, t in sorted(result.markers.items(), key=lambda kv: kv[1]):
        mx = x(t)
        color = _MARKER_COLORS.get(label, "#495057")
        out.append(
            f'<line x1="{mx:.1f}" y1="{_TOP - 8}" x2="{mx:.1f}" y2="{axis_y}" stroke="{color}" '
            f'stroke-width="2" stroke-dasharray="5 4"/>'
        )
        w = 9 + 7.2 * len(label)
        out.append(
            f'<rect x="{mx - w / 2:.1f}" y="6" width="{w:.1f}" height="22" rx="11" fill="{color}"/>'
        )
        out.append(
            f'<text x="{mx:.1f}" y="21" font-size="12" font-weight="600" text-anchor="middle" '
            f'fill="#ffffff">{_esc(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def render_html(result: DemoResult) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    key_run = "key revoked" in result.markers
    rows = []
    for mode in MODES:
        s = result.mode_summary(mode)
        title, sub = _MODE_TITLES.get(mode, (mode, ""))
        calls = s["issuer_calls_per_check"]
        rows.append(
            "<tr>"
            f'<td class="mode">{_esc(title)}<small>{_esc(sub)}</small></td>'
            f"<td>{_pill(s['revoked_after_s'])}</td>"
            f"<td>{_pill(s['key_revoked_after_s'], applicable=key_run)}</td>"
            f"<td>{_num(s['check_p50_ms'], 2)}</td>"
            f"<td>{_num(s['check_p99_ms'], 2)}</td>"
            f"<td>{_num(calls, 3)}</td>"
            f"<td>{s['checks']}</td>"
            "</tr>"
        )
    notes = [
        "Deletion and revocation times are when the request was sent, so the delays shown are "
        "upper bounds.",
        "OIDC verifies offline with cached keys: it cannot know that a pod was deleted, and keeps "
        "a revoked key until its JWKS cache expires.",
        "TokenReview asks the issuer on every check: exact, at the price of one call per check.",
        "Hybrid verifies offline and follows the issuer's invalidation stream: rejections within "
        "about a second, almost no calls per check.",
        *result.notes,
    ]
    legend = (
        '<div class="legend">'
        f'<span><span class="sw" style="background:{COLORS["accepted"]}"></span>accepted</span>'
        f'<span><span class="sw" style="background:{COLORS["rejected"]}"></span>rejected</span>'
        f'<span><span class="sw" style="background:{COLORS["unavailable"]}"></span>'
        "could not check</span>"
        '<span><span class="dash"></span>event (pod deleted, key rotated, key revoked)</span>'
        "<span><b>pod token</b>: bound to the pod that is deleted &middot; <b>key token</b>: "
        "signed by the key that is revoked</span>"
        "</div>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>sa-oidc demo: OIDC vs TokenReview vs hybrid</title>"
        f"<style>{_CSS}</style></head><body><main>"
        "<h1>OIDC vs TokenReview vs hybrid</h1>"
        f'<p class="sub">Issuer {_esc(result.issuer)} &middot; store {_esc(result.store)} '
        f"&middot; {result.duration_s:g} s &middot; {result.rate_hz:g} checks/s per mode and "
        "token</p>"
        '<div class="card"><table><thead><tr>'
        "<th>mode</th><th>pod deleted &rarr;</th><th>key revoked &rarr;</th>"
        "<th>p50 ms</th><th>p99 ms</th><th>issuer calls / check</th><th>checks</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        "<h2>Timeline</h2>"
        f'<div class="card">{render_svg(result)}{legend}</div>'
        '<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"
        "</main></body></html>\n"
    )
