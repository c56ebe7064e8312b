"""Pipeline health: which day partitions of each asset exist, how fresh they are, and Kafka lag — from the
Dagster GraphQL API when the webserver answers, from the Delta tables' own timestamps otherwise."""

from __future__ import annotations

from datetime import date, timedelta

from dash import Input, Output, dcc, html

from dash_app import data
from dash_app.pages.common import ago, badge, card, empty_state, figure, fmt_time, notice, table

DAYS_SHOWN = 14


def layout(access: data.DataAccess, params: dict) -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.H1("Pipeline health"),
                    html.P("Materialized day partitions per asset, freshness and Kafka lag.", className="subtitle"),
                ],
                className="page-head",
            ),
            dcc.Interval(id="health-tick", interval=30_000),
            html.Div(body(access), id="health-body"),
        ]
    )


def _days(health: dict) -> list[str]:
    """The last DAYS_SHOWN days up to today; or up to the newest partition when that is older (a backfill)."""
    seen = [
        date.fromisoformat(d[:10]) for a in health["assets"] for d in a["materialized"] + a["failed"] if len(d) >= 10
    ]
    today = date.today()
    end = today if not seen or (today - max(seen)).days < DAYS_SHOWN else max(seen)
    return [(end - timedelta(days=i)).isoformat() for i in range(DAYS_SHOWN - 1, -1, -1)]


def body(access: data.DataAccess) -> html.Div:
    health = access.pipeline_health()
    source = (
        notice(
            [html.B("Live from Dagster. "), f"Asked {access.dagster_url} at {fmt_time(health['checked_at'])}."],
            kind="ok",
            id="health-source",
        )
        if health["source"] == "dagster"
        else notice(
            [
                html.B("Dagster is not reachable. "),
                health.get("dagster_error", ""),
                " Partitions below are the dates present in each Delta table; Kafka lag needs Dagster.",
            ],
            kind="info",
            id="health-source",
        )
    )
    assets = health["assets"]
    if not assets:
        return html.Div([source, empty_state("No assets", "Nothing is materialized yet.")])
    days = _days(health)
    names = [a["asset"] for a in assets]
    z, text = [], []
    for a in assets:
        done, failed = set(d[:10] for d in a["materialized"]), set(d[:10] for d in a["failed"])
        z.append([2 if d in failed else 1 if d in done else 0 for d in days])
        text.append(["failed" if d in failed else "materialized" if d in done else "missing" for d in days])
    heatmap = [
        {
            "type": "heatmap",
            "z": z,
            "x": days,
            "y": names,
            "text": text,
            "zmin": 0,
            "zmax": 2,
            "xgap": 3,
            "ygap": 3,
            "showscale": False,
            "hovertemplate": "%{y} · %{x}: %{text}<extra></extra>",
            "colorscale": [
                [0, "#e5e7eb"],
                [0.33, "#e5e7eb"],
                [0.34, "#10b981"],
                [0.66, "#10b981"],
                [0.67, "#ef4444"],
                [1, "#ef4444"],
            ],
        }
    ]
    layout = {
        "yaxis": {"autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"},
        "xaxis": {"type": "category", "tickangle": -45, "gridcolor": "rgba(0,0,0,0)"},
        "margin": {"l": 150, "r": 16, "t": 8, "b": 80},
    }
    grid = figure(heatmap, layout, height=max(220, 30 * len(names) + 100), id="partition-grid")

    def freshness(a):
        if a.get("freshness"):
            kind = {"HEALTHY": "ok", "WARNING": "warn", "DEGRADED": "error"}.get(a["freshness"], "muted")
            return badge(a["freshness"].lower(), kind)
        return html.Span(ago(a["last_update"]), className="muted")

    import pandas as pd

    frame = pd.DataFrame([{**a, "n": len(a["materialized"]), "nf": len(a["failed"])} for a in assets])
    columns = [
        ("Asset", "asset"),
        ("Partitions", lambda r: f"{r.n}" + (f" ({r.nf} failed)" if r.nf else "")),
        ("Latest partition", lambda r: (r.last_partition or "—")[:10]),
        ("Last update", lambda r: fmt_time(r.last_update)),
        ("Freshness", lambda r: freshness(r._asdict())),
    ]
    if "delta_version" in frame.columns:
        columns.append(("Delta version", lambda r: "—" if pd.isna(r.delta_version) else str(int(r.delta_version))))
    parts = [
        source,
        card(
            f"Partitions, last {DAYS_SHOWN} days",
            html.Div(
                [
                    html.Div(
                        [badge("materialized", "ok"), badge("failed", "error"), badge("missing", "muted")],
                        className="meta-row",
                    ),
                    grid,
                ]
            ),
            id="partitions-card",
        ),
        card("Assets", table(frame, columns, class_name="compact")),
    ]
    if health["kafka"]:
        rows = []
        for k in health["kafka"]:
            md = k["metadata"]
            lag = {key: val for key, val in md.items() if "lag" in key.lower()}
            rows.append(
                {
                    "asset": k["asset"],
                    "observed": fmt_time(k["observed_at"]),
                    "lag": ", ".join(f"{a}: {b}" for a, b in lag.items()) or "—",
                    "other": ", ".join(f"{a}: {b}" for a, b in md.items() if a not in lag)[:160] or "—",
                }
            )
        parts.append(
            card(
                "Kafka topics",
                table(
                    pd.DataFrame(rows),
                    [("Topic asset", "asset"), ("Observed", "observed"), ("Lag", "lag"), ("Offsets / other", "other")],
                    class_name="compact",
                ),
                id="kafka-card",
            )
        )
    return html.Div(parts)


def register(app) -> None:
    @app.callback(Output("health-body", "children"), Input("health-tick", "n_intervals"), prevent_initial_call=True)
    def _tick(_):
        return body(data.current())
