# podrec Dash app: a slim image (no ML stack, no Java) served by waitress, a production WSGI server.
# Build from the repository root:  docker build -f docker/dash.Dockerfile -t podrec-dash:latest .
# It reads the Delta lake (read-only volume or object store) and MongoDB with a read-only user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:${PATH}
WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt docker/dash-requirements.txt ./
RUN pip install --no-cache-dir -c constraints.txt -r dash-requirements.txt
COPY pyproject.toml README.md ./
COPY podrec_assets ./podrec_assets
COPY dash_app ./dash_app
RUN pip install --no-cache-dir --no-deps . \
 && python -c "import dash_app.app"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 podrec \
 && useradd --system --uid 10001 --gid podrec --create-home --home-dir /home/podrec podrec \
 && mkdir -p /var/lib/podrec /opt/podrec \
 && chown podrec:podrec /var/lib/podrec
COPY --from=build /opt/venv /opt/venv
COPY docker/dash_wsgi.py /opt/podrec/
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PODREC_HOME=/var/lib/podrec
WORKDIR /opt/podrec
USER 10001:10001
EXPOSE 8050
CMD ["python", "-m", "waitress", "--host=0.0.0.0", "--port=8050", "--threads=8", "--call", "dash_wsgi:create_server"]
