"""WSGI entry point of the Dash image: waitress calls ``create_server`` to get the app's Flask server.

The app is built from the process's settings (PODREC_* variables), so the image holds no configuration.
"""

from __future__ import annotations


def create_server():
    """The Dash app's WSGI callable, for ``python -m waitress --call dash_wsgi:create_server``."""
    from dash_app.app import create_app
    from podrec_assets.settings import get_settings

    return create_app(get_settings()).server
