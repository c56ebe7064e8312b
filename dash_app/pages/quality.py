"""Model quality: recommendation_metrics day by day for every model (popularity, ALS, content, hybrid),
and how fusion weighted ALS against content (alpha)."""

from __future__ import annotations

import pandas as pd
from dash import Input, Output, dcc, html

from dash_app import data
from dash_app.pages.common import card, empty_state, figure, fmt, fmt_int, stat, table, values

MODEL_ORDER = ["popularity", "als", "content", "hybrid"]
MODEL_COLORS = {"popularity": "#f59e0b", "als": "#4f46e5", "content": "#0d9488", "hybrid": "#db2777"}
REASON_COLORS = {"hybrid": "#db2777", "als": "#4f46e5", "content": "#0d9488", "popular": "#f59e0b"}


STDERR_SUFFIX = "_stderr"  # "ndcg@10_stderr": the standard error of "ndcg@10", drawn as its error bars


def _plotted_metrics(metrics: pd.DataFrame) -> list[str]:
    return sorted(m for m in metrics["metric"].unique() if not m.endswith(STDERR_SUFFIX))


def _default_metric(metrics: pd.DataFrame) -> str:
    names = _plotted_metrics(metrics)
    for preferred in ("ndcg@", "precision@", "recall@"):
        for name in names:
            if name.startswith(preferred):
                return name
    return names[0]


def layout(access: data.DataAccess, params: dict) -> html.Div:
    head = html.Div(
        [
            html.H1("Model quality"),
            html.P(
                "Offline evaluation: what was recommended for day D−1 against what users did on day D.",
                className="subtitle",
            ),
        ],
        className="page-head",
    )
    metrics = access.metrics()
    if metrics.empty:
        return html.Div(
            [
                head,
                empty_state(
                    "No evaluation yet",
                    "recommendation_metrics is empty: it needs final_recommendations for a day and the "
                    "listening of the day after. Materialize two consecutive days.",
                ),
            ]
        )
    names = _plotted_metrics(metrics)
    metric = params.get("metric") if params.get("metric") in names else _default_metric(metrics)
    return html.Div(
        [
            head,
            html.Div(
                [
                    html.Span("Metric", className="muted"),
                    dcc.Dropdown(
                        id="metric",
                        options=[{"label": n, "value": n} for n in names],
                        value=metric,
                        clearable=False,
                        className="metric-dropdown",
                    ),
                ],
                className="toolbar",
            ),
            html.Div(metric_view(metrics, metric), id="metric-view"),
            html.Div(
                [
                    card("Latest day, every metric", latest_table(metrics), class_name="half"),
                    card("Fusion weight α", alpha_view(access), class_name="half"),
                ],
                className="row",
            ),
        ]
    )


def _model_rank(model: str) -> int:
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


def metric_view(metrics: pd.DataFrame, metric: str) -> html.Div:
    rows = metrics[metrics["metric"] == metric].copy()
    rows["date"] = rows["date"].astype(str)
    rows = rows.sort_values(["date", "model"])
    errors = metrics[metrics["metric"] == metric + STDERR_SUFFIX].assign(date=lambda f: f["date"].astype(str))
    errors = errors.set_index(["date", "model"])["value"]
    days = sorted(rows["date"].unique())
    traces = []
    for model in sorted(rows["model"].unique(), key=_model_rank):
        group = rows[rows["model"] == model]
        trace = {
            "type": "scatter",
            "mode": "lines+markers",
            "name": model,
            "x": values(group["date"]),
            "y": values(group["value"]),
            "customdata": values(group["users_evaluated"]),
            "marker": {"color": MODEL_COLORS.get(model)},
            "line": {"color": MODEL_COLORS.get(model), "width": 2.5},
            "hovertemplate": f"{model}<br>%{{x}}: %{{y:.4f}}<br>%{{customdata}} users<extra></extra>",
        }
        if len(errors):
            spread = [errors.get((d, model)) for d in group["date"]]
            trace["error_y"] = {
                "type": "data",
                "array": values(pd.Series(spread, dtype=float)),
                "visible": True,
                "thickness": 1.2,
                "width": 3,
            }
        traces.append(trace)
    layout = {
        "xaxis": {"type": "category", "categoryorder": "array", "categoryarray": days},
        "yaxis": {"title": {"text": metric}},
    }
    latest = rows[rows["date"] == rows["date"].max()].sort_values("value", ascending=False)
    best = latest.iloc[0] if not latest.empty else None
    stats = html.Div(
        [stat(f"{m} ({rows['date'].max()})", fmt(v, 4)) for m, v in zip(latest["model"], latest["value"])]
        + ([stat("Best", str(best["model"]), metric)] if best is not None else []),
        className="stats",
    )
    return html.Div([stats, card(f"{metric} by day", figure(traces, layout, height=320), id="metric-chart")])


def latest_table(metrics: pd.DataFrame) -> html.Div:
    latest_day = metrics["date"].max()
    latest = metrics[metrics["date"] == latest_day]
    wide = latest.pivot_table(index="metric", columns="model", values="value", aggfunc="first").reset_index()
    models = sorted([c for c in wide.columns if c != "metric"], key=_model_rank)
    columns = [("Metric", "metric")] + [(m, (lambda r, m=m: fmt(getattr(r, m, None), 4))) for m in models]
    wide.columns = [str(c) for c in wide.columns]
    users = latest["users_evaluated"].max()
    return html.Div(
        [
            html.Div(f"{str(latest_day)[:10]} · {fmt_int(users)} users evaluated", className="muted small"),
            table(wide, columns, class_name="compact"),
        ]
    )


def alpha_view(access: data.DataAccess) -> html.Div:
    s = access.settings
    summary = access.alpha_summary()
    select = getattr(s, "fusion_alpha_select", "fixed")
    how = (
        f"re-chosen each day on up to {getattr(s, 'fusion_validation_days', 1)} earlier days "
        "(PODREC_FUSION_ALPHA_SELECT=validate), moving away from the settings only on a gain of more than two "
        "standard errors; the settings are"
        if select == "validate"
        else "fixed by the settings:"
    )
    config = html.P(
        [
            f"final = α·ALS + (1−α)·content; α is {how} α = {s.fusion_alpha} for established episodes, "
            f"{s.fusion_alpha_new} on the day an episode is published, rising over {s.fusion_alpha_ramp_days} days. "
            "The line is the mean α actually used."
        ],
        className="muted small",
    )
    if summary.empty:
        return html.Div([config, empty_state("No recommendations yet", "final_recommendations is empty.")])
    summary = summary.assign(date=summary["date"].astype(str))
    days = values(summary["date"])
    traces = [
        {
            "type": "bar",
            "name": reason,
            "x": days,
            "y": values(summary[reason] * 100),
            "marker": {"color": REASON_COLORS[reason]},
        }
        for reason in REASON_COLORS
    ]
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "mean α",
            "x": days,
            "y": values(summary["mean_alpha"]),
            "yaxis": "y2",
            "line": {"color": "#111827", "width": 2},
        }
    )
    layout = {
        "barmode": "stack",
        "xaxis": {"type": "category"},
        "yaxis": {"title": {"text": "% of picks by reason"}},
        "yaxis2": {"title": {"text": "mean α"}, "overlaying": "y", "side": "right", "range": [0, 1], "showgrid": False},
        "margin": {"l": 48, "r": 48, "t": 16, "b": 40},
    }
    return html.Div([config, figure(traces, layout, height=260, id="alpha-chart")])


def register(app) -> None:
    @app.callback(Output("metric-view", "children"), Input("metric", "value"), prevent_initial_call=True)
    def _metric(metric):
        return metric_view(data.current().metrics(), metric)
