"""Small view helpers shared by the pages: cards, tables with links, empty states, the plotly theme."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

import pandas as pd
from dash import dcc, html

PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316", "#64748b"]


def episode_href(episode_id: str) -> str:
    return "/episodes?" + urlencode({"episode": episode_id})


def user_href(user_id: str) -> str:
    return "/?" + urlencode({"user": user_id})


def episode_link(episode_id: str | None, title: str | None = None, show: str | None = None, link_id: Any = None) -> Any:
    if not episode_id:
        return html.Span("—", className="muted")
    kwargs = {"id": link_id} if link_id is not None else {}
    children = [html.Span(title or episode_id, className="ep-title")]
    if show:
        children.append(html.Span(show, className="ep-show"))
    return dcc.Link(children, href=episode_href(episode_id), className="ep-link", **kwargs)


def card(title: str | None, *children: Any, class_name: str = "", **kwargs: Any) -> html.Div:
    head = [html.H3(title, className="card-title")] if title else []
    return html.Div(head + list(children), className=f"card {class_name}".strip(), **kwargs)


def stat(label: str, value: Any, hint: str | None = None) -> html.Div:
    return html.Div(
        [
            html.Div(label, className="stat-label"),
            html.Div(value, className="stat-value"),
            html.Div(hint or "", className="stat-hint"),
        ],
        className="stat",
    )


def empty_state(title: str, hint: str, class_name: str = "") -> html.Div:
    return html.Div(
        [
            html.Div("∅", className="empty-icon"),
            html.Div(title, className="empty-title"),
            html.Div(hint, className="empty-hint"),
        ],
        className=f"empty {class_name}".strip(),
    )


def notice(text: Any, kind: str = "info", **kwargs: Any) -> html.Div:
    return html.Div(text, className=f"notice notice-{kind}", **kwargs)


def table(
    frame: pd.DataFrame,
    columns: list[tuple[str, str | Callable[[Any], Any]]],
    class_name: str = "",
    row_id: Callable[[Any], str] | None = None,
) -> html.Table:
    """An HTML table; each column is (header, field name or row -> cell)."""
    head = html.Thead(html.Tr([html.Th(h) for h, _ in columns]))
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for _, spec in columns:
            value = spec(row) if callable(spec) else getattr(row, spec)
            cells.append(html.Td(value))
        rows.append(html.Tr(cells, **({"id": row_id(row)} if row_id else {})))
    return html.Table([head, html.Tbody(rows)], className=f"tbl {class_name}".strip())


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "—"


def fmt_time(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def ago(value: Any) -> str:
    if value is None or value is pd.NaT:
        return "never"
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    seconds = (datetime.now(timezone.utc) - ts.to_pydatetime()).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def mmss(seconds: Any) -> str:
    seconds = float(seconds or 0)
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def badge(text: str, kind: str | None = None) -> html.Span:
    return html.Span(text, className=f"badge badge-{kind or text}")


_AXIS = {"gridcolor": "#eef0f4", "zeroline": False, "linecolor": "#d1d5db", "automargin": True}


def figure(traces: list[dict], layout: dict | None = None, height: int = 300, **kwargs: Any) -> dcc.Graph:
    """A chart from plain plotly.js dicts: no graph_objects validation or template copies (those cost
    100+ ms per figure server-side; building dicts keeps callbacks fast)."""
    layout = dict(layout or {})
    base = {
        "height": height,
        "margin": {"l": 48, "r": 16, "t": 16, "b": 40},
        "font": {"family": "Inter, system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#1f2937"},
        "colorway": PALETTE,
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hoverlabel": {"font": {"size": 12}},
    }
    for axis in [k for k in layout if k.startswith(("xaxis", "yaxis"))] + ["xaxis", "yaxis"]:
        layout[axis] = {**_AXIS, **layout.get(axis, {})}
    return dcc.Graph(figure={"data": traces, "layout": {**base, **layout}}, config={"displayModeBar": False}, **kwargs)


def values(series: Any) -> list:
    """A column as JSON-ready values (dates and timestamps as ISO strings)."""
    if hasattr(series, "dt") or str(getattr(series, "dtype", "")).startswith(("datetime", "date")):
        return [None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in series]
    return [
        None if (isinstance(v, float) and math.isnan(v)) else (v.item() if hasattr(v, "item") else v) for v in series
    ]


def chips(items: Iterable[Any]) -> html.Div:
    return html.Div([html.Span(i, className="chip") for i in items], className="chips")
