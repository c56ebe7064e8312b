"""Engagement: listening events over a chosen window, top episodes, event mix, devices, new vs
returning users and the dead-letter rate — DuckDB over the Delta tables (works without MongoDB)."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dash_app import data
from dash_app.pages.common import PALETTE, card, empty_state, episode_link, figure, fmt_int, fmt_time, stat, table

WINDOW_LABELS = {"15m": "15 min", "1h": "1 hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days", "30d": "30 days", "all": "all"}
DEFAULT_WINDOW = "7d"
EVENT_COLORS = {"play": "#4f46e5", "complete": "#10b981", "like": "#ec4899", "rate": "#f59e0b", "pause": "#94a3b8", "skip": "#ef4444"}


def _short(ts) -> str:
    return ts.strftime("%b %d %H:%M")


def layout(access: data.DataAccess, params: dict) -> html.Div:
    window = params.get("window", DEFAULT_WINDOW)
    window = window if window in data.WINDOWS else DEFAULT_WINDOW
    return html.Div([
        html.Div([html.H1("Engagement"),
                  html.P("What listeners did, from the user_events and dead_letters Delta tables.", className="subtitle")],
                 className="page-head"),
        html.Div([html.Span("Window (ending at the newest event):", className="muted"),
                  dcc.RadioItems(id="window", options=[{"label": v, "value": k} for k, v in WINDOW_LABELS.items()],
                                 value=window, inline=True, className="segmented", inputClassName="seg-input",
                                 labelClassName="seg-label")], className="toolbar"),
        html.Div(body(access, window), id="engagement-body"),
    ])


def body(access: data.DataAccess, window: str) -> html.Div:
    result = access.engagement(window)
    if result["start"] is None:
        return empty_state("No listening events yet",
                           "user_events is empty. Publish events (podrec simulate) and materialize user_events.")
    totals = result["totals"]
    over_time = result["over_time"]
    fig_time = px.bar(over_time, x="bucket", y="events", color="event", color_discrete_map=EVENT_COLORS,
                      category_orders={"event": list(EVENT_COLORS)}, labels={"bucket": "", "events": "events"})
    fig_time.update_layout(bargap=0.05)
    mix = result["mix"]
    fig_mix = go.Figure(go.Pie(labels=mix["event"], values=mix["events"], hole=0.55, sort=False, textinfo="percent",
                               marker=dict(colors=[EVENT_COLORS.get(e, "#64748b") for e in mix["event"]])))
    fig_mix.update_layout(legend=dict(orientation="v", x=1.0, y=0.5))
    devices = result["devices"]
    fig_dev = px.bar(devices, x="events", y="device", orientation="h", color_discrete_sequence=[PALETTE[1]],
                     labels={"device": "", "events": "events"})
    fig_dev.update_yaxes(autorange="reversed")
    nr = result["new_returning"]
    fig_nr = go.Figure([go.Bar(x=nr["day"].astype(str), y=nr["returning_users"], name="returning", marker_color=PALETTE[0]),
                        go.Bar(x=nr["day"].astype(str), y=nr["new_users"], name="new", marker_color=PALETTE[2])])
    fig_nr.update_layout(barmode="stack")
    fig_nr.update_xaxes(type="category")
    dead = result["dead_letters"]
    if dead.empty or dead["dead_letters"].sum() == 0:
        dead_view = empty_state("No dead letters", "Every message parsed and validated.")
    else:
        fig_dead = px.line(dead.assign(rate_pct=dead["rate"] * 100, date=dead["date"].astype(str)), x="date", y="rate_pct",
                           color="topic", markers=True, labels={"rate_pct": "% of messages", "date": ""},
                           color_discrete_sequence=[PALETTE[4], PALETTE[3]])
        fig_dead.update_xaxes(type="category")
        reasons = result["dead_letter_reasons"]
        dead_view = html.Div([figure(fig_dead, height=220),
                              table(reasons, [("Reason", "reason"), ("Messages", lambda r: fmt_int(r.n))], class_name="compact")])
    top = result["top"]
    top_table = table(top, [
        ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.episode_show)),
        ("Listeners", lambda r: fmt_int(r.listeners)), ("Events", lambda r: fmt_int(r.events)),
        ("Completes", lambda r: fmt_int(r.completes)), ("Likes", lambda r: fmt_int(r.likes)),
    ], class_name="compact")
    return html.Div([
        html.Div([
            stat("Events", fmt_int(totals["events"])), stat("Active users", fmt_int(totals["users"])),
            stat("Episodes played", fmt_int(totals["episodes"])),
            stat("Window", f"{_short(result['start'])} → {_short(result['end'])}", f"UTC, buckets of {result['bucket']}"),
        ], className="stats"),
        card("Events over time", figure(fig_time, height=280), id="events-over-time"),
        html.Div([card("Event types", figure(fig_mix, height=260), class_name="third"),
                  card("Devices", figure(fig_dev, height=260), class_name="third"),
                  card("New vs returning users", figure(fig_nr, height=260), class_name="third")], className="row"),
        html.Div([card("Top episodes", top_table, class_name="half"),
                  card("Dead-letter rate", dead_view, class_name="half")], className="row"),
    ])


def register(app) -> None:
    @app.callback(Output("engagement-body", "children"), Input("window", "value"), prevent_initial_call=True)
    def _window(window):
        return body(data.current(), window if window in data.WINDOWS else DEFAULT_WINDOW)
