"""Episodes: search by title or show; one episode's metadata, its transcript (searchable segments with
times) and its most similar episodes."""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from dash_app import data
from dash_app.pages.common import (
    badge,
    card,
    chips,
    empty_state,
    episode_link,
    fmt,
    fmt_int,
    fmt_time,
    mmss,
    notice,
    stat,
    table,
)


def layout(access: data.DataAccess, params: dict) -> html.Div:
    episode_id = params.get("episode", "").strip()
    header = html.Div(
        [
            html.H1("Episodes"),
            html.P("Catalog, transcripts and content neighbours (Delta lake).", className="subtitle"),
        ],
        className="page-head",
    )
    search = card(
        None,
        html.Div(
            [
                dcc.Input(
                    id="episode-search",
                    type="text",
                    value="",
                    placeholder="Search episodes by title or show…",
                    debounce=False,
                    autoComplete="off",
                    className="search-input",
                ),
                html.Div(id="episode-results", className="results"),
            ]
        ),
        class_name="search-card",
    )
    if not episode_id:
        return html.Div([header, search])
    return html.Div([header, search, episode_view(access, episode_id)])


def search_results(access: data.DataAccess, text: str) -> html.Div:
    found = access.search_episodes(text, 12)
    if found.empty:
        if access.table_is_empty("episodes"):
            return empty_state(
                "The catalog is empty", "Materialize the episodes asset (it reads the episode-metadata topic)."
            )
        return html.Span(f"No episode title or show contains “{text}”.", className="muted", id="no-episode-match")
    columns = [
        ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.podcast_title)),
        ("Published", lambda r: fmt_time(r.published_at)),
    ]
    label = "Latest episodes" if not text.strip() else f"{len(found)} match{'es' if len(found) != 1 else ''}"
    return html.Div([html.Div(label, className="results-label"), table(found, columns, class_name="compact")])


def episode_view(access: data.DataAccess, episode_id: str) -> html.Div:
    meta = access.episode(episode_id)
    if meta is None:
        return notice(
            [html.B(f"No episode “{episode_id}”. "), "It is not in the episodes table; search above by title."],
            kind="warn",
            id="unknown-episode",
        )
    audience = access.episode_audience(episode_id)
    transcript = access.transcript(episode_id)
    categories = list(meta.get("categories") if meta.get("categories") is not None else [])
    info = card(
        None,
        html.Div(meta.get("podcast_title") or "", className="eyebrow"),
        html.H2(meta.get("episode_title") or episode_id, id="episode-title"),
        html.Div(
            [
                chips(categories),
                badge(meta.get("source") or "?", "source"),
                badge((meta.get("language") or "?").upper(), "lang"),
            ],
            className="meta-row",
        ),
        html.P(meta.get("description") or "", className="description"),
        html.Div(
            [
                stat("Published", fmt_time(meta.get("published_at"))),
                stat("Duration", mmss(meta.get("duration_sec")) if meta.get("duration_sec") else "—"),
                stat("Listeners", fmt_int(audience.get("listeners")), "distinct users"),
                stat("Completion", f"{float(audience.get('completion_rate') or 0) * 100:.0f}%", "of listener-days"),
            ],
            className="stats",
        ),
        html.Div(f"id {episode_id}", className="muted small"),
    )
    return html.Div(
        [
            info,
            html.Div(
                [
                    card("Transcript", transcript_view(transcript, episode_id), class_name="half"),
                    card(
                        "Most similar episodes",
                        neighbours_view(access, episode_id),
                        class_name="half",
                        id="neighbours-card",
                    ),
                ],
                className="row",
            ),
        ],
        id="episode-view",
    )


def transcript_view(transcript: dict | None, episode_id: str) -> html.Div:
    if transcript is None:
        return empty_state("No transcript yet", "The transcripts asset has not processed this episode's day.")
    status = transcript.get("status")
    if transcript.get("text_source") == "published":
        fmt_name, language = transcript.get("transcript_format") or "", transcript.get("language") or "?"
        origin = f"publisher's {fmt_name} transcript · language {language}"
    else:
        origin = (
            f"{transcript.get('model') or ''} · language {transcript.get('language') or '?'}"
            f" ({fmt(transcript.get('language_probability'), 2)})"
        )
    why = transcript.get("asr_reason")
    head = html.Div(
        [badge(status or "?"), html.Span(origin, className="muted", id="transcript-origin")]
        + (
            [html.Span(f"speech recognition ran: {why}", className="muted small")]
            if why and why != "none_published"
            else []
        ),
        className="meta-row",
    )
    if status != "ok":
        return html.Div(
            [head, notice(transcript.get("error") or "Not transcribed (language not enabled).", kind="warn")]
        )
    return html.Div(
        [
            head,
            dcc.Store(id="transcript-episode", data=episode_id),
            dcc.Input(
                id="transcript-filter",
                type="text",
                placeholder="Search the transcript…",
                debounce=False,
                className="search-input small-input",
            ),
            html.Div(segments_view(transcript["segments"], ""), id="transcript-segments", className="segments scroll"),
        ]
    )


def segments_view(segments: list[dict], text: str) -> list:
    text = (text or "").strip().lower()
    shown = [s for s in segments if not text or text in (s.get("text") or "").lower()]
    if not shown:
        return [html.Div(f"No segment mentions “{text}”.", className="muted")]
    out = []
    for s in shown:
        words = s.get("text") or ""
        if text:
            i = words.lower().find(text)
            body = [words[:i], html.Mark(words[i : i + len(text)]), words[i + len(text) :]]
        else:
            body = [words]
        when = f"{mmss(s.get('start'))}–{mmss(s.get('end'))}" if s.get("start") is not None else ""
        out.append(
            html.Div(
                [html.Span(when, className="seg-time"), html.Span(body, className="seg-text")], className="segment"
            )
        )
    return out


def neighbours_view(access: data.DataAccess, episode_id: str) -> html.Div:
    rows = access.neighbours(episode_id)
    later = access.similar_later(episode_id)
    parts = []
    if rows.empty:
        parts.append(empty_state("No neighbours yet", "The similarities asset has not run for this episode's day."))
    else:
        columns = [
            ("#", "rank"),
            ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.episode_show)),
            (
                "Cosine",
                lambda r: html.Div(
                    [
                        html.Div(
                            className="bar bar-teal", style={"width": f"{max(0.0, r.cosine_similarity) * 100:.0f}%"}
                        ),
                        html.Span(fmt(r.cosine_similarity)),
                    ],
                    className="bar-cell",
                ),
            ),
        ]
        parts += [
            html.Div(f"{rows['model'].iloc[0]} · computed {str(rows['date'].iloc[0])[:10]}", className="muted small"),
            table(rows, columns, class_name="compact neighbours-table"),
        ]
    if not later.empty:
        parts += [
            html.H4("Episodes that list this one as a neighbour"),
            table(
                later,
                [
                    ("Episode", lambda r: episode_link(r.episode_id, r.episode_title, r.episode_show)),
                    ("Cosine", lambda r: fmt(r.cosine_similarity)),
                ],
                class_name="compact",
            ),
        ]
    return html.Div(parts)


def register(app) -> None:
    @app.callback(Output("episode-results", "children"), Input("episode-search", "value"), State("url", "search"))
    def _search(text, url_search):
        if not (text or "").strip() and "episode=" in (url_search or ""):
            return []  # an episode is open: no list until the user searches
        return search_results(data.current(), text or "")

    @app.callback(
        Output("transcript-segments", "children"),
        Input("transcript-filter", "value"),
        State("transcript-episode", "data"),
        prevent_initial_call=True,
    )
    def _filter(text, episode_id):
        transcript = data.current().transcript(episode_id)
        return segments_view(transcript["segments"] if transcript else [], text or "")
