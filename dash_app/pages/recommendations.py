"""Recommendations: find a user by id prefix, see the latest top-N with scores and reasons, their
listening history and how their list changed from day to day."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from dash_app import data
from dash_app.live import LiveList, live_list
from dash_app.pages.common import (
    badge,
    card,
    empty_state,
    episode_link,
    figure,
    fmt,
    fmt_int,
    notice,
    stat,
    table,
    user_href,
    values,
)

REASON_TEXT = {
    "hybrid": "liked by similar listeners and close to what they heard",
    "als": "listeners like them enjoyed it",
    "content": "close in content to what they heard",
    "popular": "popular right now (new listener)",
}


def layout(access: data.DataAccess, params: dict) -> html.Div:
    user_id = params.get("user", "").strip()
    header = html.Div(
        [
            html.H1("Recommendations"),
            html.P(
                "Latest top-N per user: fused ALS + content scores, with the episode that explains each pick.",
                className="subtitle",
            ),
        ],
        className="page-head",
    )
    search = card(
        None,
        html.Div(
            [
                dcc.Input(
                    id="user-search",
                    type="text",
                    value=user_id,
                    placeholder="Find a user — type the start of an id, e.g. u00",
                    debounce=False,
                    autoComplete="off",
                    className="search-input",
                    n_submit=0,
                ),
                html.Div(id="user-matches", className="matches"),
            ],
            className="search-row",
        ),
        class_name="search-card",
    )
    if not user_id:
        samples = access.sample_users(6)
        if not samples:
            body = empty_state(
                "No users yet",
                "final_recommendations and user_episode_daily are empty. Materialize the asset graph "
                "(podrec demo, or the Dagster UI) and come back.",
            )
        else:
            body = card(
                "Pick a user",
                html.P(f"{fmt_int(access.user_count())} users have recommendations or history. For example:"),
                html.Div(
                    [
                        dcc.Link(u, href=user_href(u), className="chip chip-link", id=f"sample-{i}")
                        for i, u in enumerate(samples)
                    ],
                    className="chips",
                ),
            )
        return html.Div([header, search, body])
    return html.Div([header, search, user_view(access, user_id)])


def user_view(access: data.DataAccess, user_id: str) -> html.Div:
    recs = access.recommendations(user_id)
    known = access.user_exists(user_id) or not recs.rows.empty
    if not known:
        suggestions = access.search_users(user_id[:-1] if len(user_id) > 1 else user_id, 6) or access.sample_users(6)
        return html.Div(
            [
                notice(
                    [
                        html.B(f"No user named “{user_id}”. "),
                        "They have no recommendations and no listening history in the lake. Check the id, or try "
                        "one of these:",
                    ],
                    kind="warn",
                    id="unknown-user",
                ),
                html.Div(
                    [dcc.Link(u, href=user_href(u), className="chip chip-link") for u in suggestions], className="chips"
                ),
            ]
        )
    latest = recs.latest()
    history = access.listening_history(user_id)
    source_hint = "MongoDB serving copy" if recs.source == "mongo" else "Delta lake (MongoDB unavailable)"
    model_version = str(latest["model_version"].iloc[0]) if not latest.empty and "model_version" in latest else "—"
    stats = html.Div(
        [
            stat("User", user_id),
            stat("Latest list", recs.latest_date or "—", source_hint),
            stat("Model version", model_version),
            stat(
                "Days listened",
                fmt_int(history["date"].nunique()) if not history.empty else "0",
                "in user_episode_daily",
            ),
        ],
        className="stats",
    )

    if latest.empty:
        recs_card = card(
            "Top picks",
            empty_state(
                "No recommendations for this user yet",
                "They have listening history, but final_recommendations has no list for them. "
                "It appears after the next final_recommendations partition.",
            ),
        )
    else:
        max_score = max(float(latest["final_score"].max() or 0), 1e-9)
        columns = [
            ("#", lambda r: html.Span(r.rank, className="rank")),
            ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.episode_show)),
            (
                "Final",
                lambda r: html.Div(
                    [
                        html.Div(className="bar", style={"width": f"{max(0, r.final_score) / max_score * 100:.0f}%"}),
                        html.Span(fmt(r.final_score)),
                    ],
                    className="bar-cell",
                ),
            ),
            ("ALS", lambda r: fmt(r.als_score)),
            ("Content", lambda r: fmt(r.content_score)),
            ("Alpha", lambda r: fmt(r.alpha, 2)),
            (
                "Why",
                lambda r: html.Div(
                    [badge(str(r.reason)), html.Span(REASON_TEXT.get(str(r.reason), ""), className="why-text")]
                ),
            ),
            (
                "Because you listened to",
                lambda r: (
                    episode_link(r.because_episode_id, r.because_episode_title, None, link_id=f"because-{r.rank}")
                    if isinstance(r.because_episode_id, str) and r.because_episode_id
                    else html.Span("—", className="muted")
                ),
            ),
        ]
        if "because_episode_title" not in latest.columns:
            latest = latest.assign(because_episode_title=None)
        recs_card = card(
            f"Top {len(latest)} on {recs.latest_date}", table(latest, columns, class_name="recs-table"), id="recs-card"
        )

    live = live_list(access.settings, user_id)
    return html.Div(
        [
            stats,
            recs_card,
            html.Div(
                [
                    card("Live list (podrec serve)", live_view(live), class_name="half", id="live-card"),
                    card(
                        "Category mix: listened vs recommended",
                        category_mix_view(access.categories(), history, latest, live),
                        class_name="half",
                        id="category-mix",
                    ),
                ],
                className="row",
            ),
            html.Div(
                [
                    card("How the list changed", changes_view(recs.rows), class_name="half"),
                    card("Listening history", history_view(history), class_name="half"),
                ],
                className="row",
            ),
        ],
        id="user-view",
    )


def live_view(live: LiveList) -> html.Div:
    """The API's list now: the batch list until the listener's events since change it."""
    if live.error:
        return notice(live.error, kind="warn", id="live-unavailable")
    body = live.body or {}
    items = pd.DataFrame(body.get("items", []))
    if body.get("live"):
        state = f"recomputed from their events at {str(body.get('computed_at', ''))[11:19]} UTC"
    elif body.get("cold_start"):
        state = "cold start: popular episodes"
    else:
        state = "no events since the batch: the batch list"
    head = html.P(
        [badge("live" if body.get("live") else "batch"), f" model day {body.get('model_day', '—')}, {state}."],
        className="muted",
        id="live-state",
    )
    if items.empty:
        return html.Div([head, empty_state("Empty list", "The API returned no episodes for this listener.")])
    columns = [
        ("#", lambda r: html.Span(r.rank, className="rank")),
        ("Episode", lambda r: episode_link(r.episode_id, r.title, r.podcast_title)),
        ("Score", lambda r: fmt(r.score)),
        ("Why", lambda r: badge(str(r.reason))),
        (
            "Because",
            lambda r: (
                episode_link(r.because_episode_id, r.because_episode_title, None)
                if isinstance(r.because_episode_id, str) and r.because_episode_id
                else html.Span("—", className="muted")
            ),
        ),
    ]
    return html.Div([head, table(items, columns, class_name="compact live-table")])


def _shares(episode_ids, categories: dict) -> dict[str, float]:
    counts: dict[str, float] = {}
    for eid in episode_ids:
        cats = categories.get(eid) or ["(none)"]
        for cat in cats:
            counts[cat] = counts.get(cat, 0.0) + 1.0 / len(cats)
    total = sum(counts.values()) or 1.0
    return {cat: n / total for cat, n in counts.items()}


def category_mix_view(categories: dict, history: pd.DataFrame, latest: pd.DataFrame, live: LiveList) -> html.Div:
    """Share of each category in what the listener heard and in what they are offered (batch, live)."""
    series = {}
    if not history.empty:
        series["listened"] = _shares(history["episode_id"], categories)
    if not latest.empty:
        series["recommended (batch)"] = _shares(latest["episode_id"], categories)
    if live.body and live.body.get("items"):
        series["recommended (live)"] = _shares([i["episode_id"] for i in live.body["items"]], categories)
    if not series:
        return empty_state("Nothing to compare", "No history and no list for this listener yet.")
    order = sorted(
        {c for shares in series.values() for c in shares}, key=lambda c: -series.get("listened", {}).get(c, 0)
    )
    traces = [
        {
            "type": "bar",
            "name": name,
            "x": order,
            "y": [round(shares.get(c, 0.0), 4) for c in order],
            "hovertemplate": f"{name}<br>%{{x}}: %{{y:.0%}}<extra></extra>",
        }
        for name, shares in series.items()
    ]
    layout = {
        "barmode": "group",
        "yaxis": {"tickformat": ".0%", "title": {"text": "share"}},
        "legend": {"orientation": "h"},
    }
    return figure(traces, layout, height=260)


def changes_view(rows: pd.DataFrame) -> html.Div:
    if rows.empty or rows["date"].nunique() < 2:
        return empty_state(
            "One day of lists so far",
            "Once a second day is materialized, the rank of each episode over days shows here.",
        )
    rows = rows.copy()
    rows["date"] = rows["date"].astype(str)
    days = sorted(rows["date"].unique())
    latest, previous = days[-1], days[-2]
    now_set = set(rows.loc[rows["date"] == latest, "episode_id"])
    before_set = set(rows.loc[rows["date"] == previous, "episode_id"])
    traces = []
    for episode_id, group in rows.sort_values("date").groupby("episode_id", sort=False):
        title = str(group["episode_title"].iloc[0] if "episode_title" in group else episode_id)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": title[:40],
                "x": values(group["date"]),
                "y": values(group["rank"]),
                "showlegend": False,
                "marker": {"size": 8},
                "hovertemplate": f"{title[:60]}<br>%{{x}}: rank %{{y}}<extra></extra>",
            }
        )
    layout = {
        "yaxis": {"autorange": "reversed", "title": {"text": "rank"}, "dtick": 1},
        "xaxis": {"type": "category", "categoryorder": "array", "categoryarray": days},
    }
    summary = html.P(
        [
            html.B(f"{len(now_set - before_set)} new"),
            f" and {len(before_set - now_set)} dropped since {previous}; ",
            f"{len(now_set & before_set)} kept.",
        ],
        className="muted",
    )
    return html.Div([summary, figure(traces, layout, height=260)])


def history_view(history: pd.DataFrame) -> html.Div:
    if history.empty:
        return empty_state(
            "No listening history", "This user has no rows in user_episode_daily (new users get popular picks)."
        )
    columns = [
        ("Day", lambda r: str(r.date)[:10]),
        ("Episode", lambda r: episode_link(r.episode_id, r.episode_title)),
        ("Engagement", lambda r: fmt(r.engagement, 1)),
        ("Events", "event_count"),
        ("Played", lambda r: f"{(r.max_played_pct or 0) * 100:.0f}%"),
        ("Done", lambda r: "✓" if r.completed else ""),
    ]
    return html.Div(table(history.head(15), columns, class_name="compact"), className="scroll")


def register(app) -> None:
    @app.callback(Output("user-matches", "children"), Input("user-search", "value"))
    def _matches(prefix):
        prefix = (prefix or "").strip()
        if not prefix:
            return html.Span("Prefix search over every user id (binary search on a sorted index).", className="muted")
        found = data.current().search_users(prefix, 12)
        if not found:
            return html.Span(f"No user id starts with “{prefix}”.", className="muted", id="no-user-match")
        return [
            dcc.Link(u, href=user_href(u), className="chip chip-link", id={"type": "user-match", "index": i})
            for i, u in enumerate(found)
        ]

    @app.callback(
        Output("url", "search"),
        Input("user-search", "n_submit"),
        State("user-search", "value"),
        prevent_initial_call=True,
    )
    def _submit(n_submit, value):
        value = (value or "").strip()
        if not n_submit or not value:
            return no_update
        access = data.current()
        if not access.user_exists(value):
            found = access.search_users(value, 1)
            value = found[0] if found else value
        return "?" + urlencode({"user": value})
