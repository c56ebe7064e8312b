"""Engagement: listening events over a chosen window, top episodes, event mix, devices, new vs
returning users and the dead-letter rate — DuckDB over the Delta tables (works without MongoDB)."""

from __future__ import annotations

import pandas as pd
from dash import Input, Output, dcc, html

from dash_app import data
from dash_app.engagement import WINDOWS
from dash_app.pages.common import PALETTE, card, empty_state, episode_link, figure, fmt_int, stat, table, values

WINDOW_LABELS = {
    "15m": "15 min",
    "1h": "1 hour",
    "6h": "6 hours",
    "24h": "24 hours",
    "7d": "7 days",
    "30d": "30 days",
    "all": "all",
}
DEFAULT_WINDOW = "7d"
EVENT_COLORS = {
    "play": "#4f46e5",
    "complete": "#10b981",
    "like": "#ec4899",
    "rate": "#f59e0b",
    "pause": "#94a3b8",
    "skip": "#ef4444",
}


def _short(ts) -> str:
    return ts.strftime("%b %d %H:%M")


def layout(access: data.DataAccess, params: dict) -> html.Div:
    window = params.get("window", DEFAULT_WINDOW)
    window = window if window in WINDOWS else DEFAULT_WINDOW
    return html.Div(
        [
            html.Div(
                [
                    html.H1("Engagement"),
                    html.P(
                        "What listeners did, from the user_events and dead_letters Delta tables.", className="subtitle"
                    ),
                ],
                className="page-head",
            ),
            html.Div(
                [
                    html.Span("Window (ending at the newest event):", className="muted"),
                    dcc.RadioItems(
                        id="window",
                        options=[{"label": v, "value": k} for k, v in WINDOW_LABELS.items()],
                        value=window,
                        inline=True,
                        className="segmented",
                        inputClassName="seg-input",
                        labelClassName="seg-label",
                    ),
                ],
                className="toolbar",
            ),
            html.Div(body(access, window), id="engagement-body"),
        ]
    )


def body(access: data.DataAccess, window: str) -> html.Div:
    result = access.engagement(window)
    if result["start"] is None:
        return empty_state(
            "No listening events yet",
            "user_events is empty. Publish events (podrec simulate) and materialize user_events.",
        )
    totals = result["totals"]
    over_time = result["over_time"]
    wide = over_time.pivot_table(
        index="bucket", columns="event", values="events", aggfunc="sum", fill_value=0
    ).sort_index()
    bucket_labels = values(pd.Series(wide.index))
    ordered = [e for e in EVENT_COLORS if e in wide.columns] + sorted(set(wide.columns) - set(EVENT_COLORS))
    traces_time = [
        {
            "type": "bar",
            "name": event,
            "x": bucket_labels,
            "y": values(wide[event]),
            "marker": {"color": EVENT_COLORS.get(event, "#64748b")},
        }
        for event in ordered
    ]
    mix = result["mix"]
    pie = [
        {
            "type": "pie",
            "labels": values(mix["event"]),
            "values": values(mix["events"]),
            "hole": 0.55,
            "sort": False,
            "textinfo": "percent",
            "marker": {"colors": [EVENT_COLORS.get(e, "#64748b") for e in mix["event"]]},
        }
    ]
    devices = result["devices"]
    device_bars = [
        {
            "type": "bar",
            "orientation": "h",
            "x": values(devices["events"]),
            "y": values(devices["device"]),
            "marker": {"color": PALETTE[1]},
            "hovertemplate": "%{y}: %{x} events<extra></extra>",
        }
    ]
    nr = result["new_returning"]
    nr_days = values(nr["day"].astype(str).str[:10])
    nr_bars = [
        {
            "type": "bar",
            "name": "returning",
            "x": nr_days,
            "y": values(nr["returning_users"]),
            "marker": {"color": PALETTE[0]},
        },
        {"type": "bar", "name": "new", "x": nr_days, "y": values(nr["new_users"]), "marker": {"color": PALETTE[2]}},
    ]
    dead = result["dead_letters"]
    if dead.empty or dead["dead_letters"].sum() == 0:
        dead_view = empty_state("No dead letters", "Every message parsed and validated.")
    else:
        dead_lines = []
        for i, (topic, group) in enumerate(dead.groupby("topic")):
            dead_lines.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": topic,
                    "x": values(group["date"].astype(str).str[:10]),
                    "y": values(group["rate"] * 100),
                    "line": {"color": [PALETTE[4], PALETTE[3]][i % 2]},
                }
            )
        reasons = result["dead_letter_reasons"]
        dead_view = html.Div(
            [
                figure(
                    dead_lines,
                    {"xaxis": {"type": "category"}, "yaxis": {"title": {"text": "% of messages"}}},
                    height=220,
                ),
                table(reasons, [("Reason", "reason"), ("Messages", lambda r: fmt_int(r.n))], class_name="compact"),
            ]
        )
    top = result["top"]
    top_table = table(
        top,
        [
            ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.episode_show)),
            ("Listeners", lambda r: fmt_int(r.listeners)),
            ("Events", lambda r: fmt_int(r.events)),
            ("Completes", lambda r: fmt_int(r.completes)),
            ("Likes", lambda r: fmt_int(r.likes)),
        ],
        class_name="compact",
    )
    return html.Div(
        [
            html.Div(
                [
                    stat("Events", fmt_int(totals["events"])),
                    stat("Active users", fmt_int(totals["users"])),
                    stat("Episodes played", fmt_int(totals["episodes"])),
                    stat(
                        "Window",
                        f"{_short(result['start'])} → {_short(result['end'])}",
                        f"UTC, buckets of {result['bucket']}",
                    ),
                ],
                className="stats",
            ),
            card(
                "Events over time",
                figure(
                    traces_time,
                    {"barmode": "stack", "bargap": 0.05, "yaxis": {"title": {"text": "events"}}},
                    height=280,
                ),
                id="events-over-time",
            ),
            html.Div(
                [
                    card(
                        "Event types",
                        figure(pie, {"legend": {"orientation": "v", "x": 1.02, "y": 0.5}}, height=260),
                        class_name="third",
                    ),
                    card(
                        "Devices",
                        figure(
                            device_bars,
                            {"yaxis": {"autorange": "reversed"}, "margin": {"l": 96, "r": 16, "t": 8, "b": 32}},
                            height=260,
                        ),
                        class_name="third",
                    ),
                    card(
                        "New vs returning users",
                        figure(nr_bars, {"barmode": "stack", "xaxis": {"type": "category"}}, height=260),
                        class_name="third",
                    ),
                ],
                className="row",
            ),
            html.Div(
                [
                    card("Top episodes", top_table, class_name="half"),
                    card("Dead-letter rate", dead_view, class_name="half"),
                ],
                className="row",
            ),
        ]
    )


def register(app) -> None:
    @app.callback(Output("engagement-body", "children"), Input("window", "value"), prevent_initial_call=True)
    def _window(window):
        return body(data.current(), window if window in WINDOWS else DEFAULT_WINDOW)
