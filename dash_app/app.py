"""The podrec Dash app: a navigation shell routing URLs to the five pages.

Routing is a single callback on the URL (path + query string) so every view is a shareable link
(``/?user=u42``, ``/episodes?episode=e7``); pages render server-side from ``dash_app.data``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from dash import Dash, Input, Output, dcc, html

from dash_app import data
from dash_app.pages import common, engagement, episodes, health, quality, recommendations
from podrec_assets.settings import Settings

PAGES = [
    ("/", "Recommendations", recommendations),
    ("/episodes", "Episodes", episodes),
    ("/engagement", "Engagement", engagement),
    ("/quality", "Model quality", quality),
    ("/health", "Pipeline health", health),
]


def _nav(pathname: str) -> list:
    links = []
    for path, title, _ in PAGES:
        active = pathname == path or (path != "/" and pathname.startswith(path))
        links.append(
            dcc.Link(
                title,
                href=path,
                className="nav-link active" if active else "nav-link",
                id=f"nav-{title.split()[0].lower()}",
            )
        )
    return links


def render(pathname: str | None, search: str | None) -> tuple[list, list, str]:
    """(banner, page content, nav) for a URL; also what the benchmark times."""
    pathname = pathname or "/"
    params = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}
    access = data.current()
    page = next((module for path, _, module in PAGES if path == pathname), None)
    if page is None:
        content = common.empty_state("Page not found", f"There is no page at {pathname}. Use the menu above.")
    else:
        content = page.layout(access, params)
    banner = []
    error = access.mongo_error()
    if error:
        banner = [
            common.notice(
                [
                    html.B("Serving database unavailable. "),
                    error,
                    ". Recommendations are read from the Delta lake instead; other pages are unaffected.",
                ],
                kind="error",
                id="mongo-banner",
            )
        ]
    return banner, content, _nav(pathname)


def create_app(settings: Settings, **data_kwargs) -> Dash:
    """Build the Dash app for ``settings`` (opens no connection until a page is requested)."""
    data.configure(settings, **data_kwargs)
    app = Dash(
        __name__,
        title="podrec",
        suppress_callback_exceptions=True,
        update_title=None,
        assets_folder=str(Path(__file__).parent / "assets"),
    )
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            html.Header(
                [
                    html.Div(
                        [html.Span("▶", className="logo-mark"), html.Span("podrec", className="logo-text")],
                        className="logo",
                    ),
                    html.Nav(_nav("/"), id="nav", className="nav"),
                ],
                className="topbar",
            ),
            html.Div(id="banner"),
            dcc.Loading(html.Main(id="page-content", className="page"), type="dot", color="#4f46e5", delay_show=400),
            html.Footer(f"podrec · lake {settings.lake_root} · serving {settings.mongo_db}", className="footer"),
        ],
        className="shell",
    )

    @app.callback(
        Output("banner", "children"),
        Output("page-content", "children"),
        Output("nav", "children"),
        Input("url", "pathname"),
        Input("url", "search"),
    )
    def _route(pathname, search):
        return render(pathname, search)

    for _, _, module in PAGES:
        module.register(app)
    return app
