"""The app's pages: each module has ``layout(access, params)`` and ``register(app)`` for its callbacks."""
