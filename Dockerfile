# incidentbot container image.
#
#   docker build -t incidentbot .
#   docker run -d -p 127.0.0.1:8080:8080 -v incidentbot-data:/var/lib/incidentbot/data \
#     --env-file incidentbot.env incidentbot
#
# The base only needs Debian with Python 3.11 (python3 -m venv); BASE_IMAGE picks another one,
# e.g. a local image made from a debootstrapped Debian where no registry can be reached
# (docs/deployment.md, "Containers").
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# Builder: build the wheel, then install it with the pinned dependencies into a virtualenv.
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY templates ./templates
COPY incidentbot ./incidentbot
# Behind a TLS-intercepting proxy, pass its CA: --secret id=pip-ca,src=/path/to/ca.pem. With
# BuildKit, the cache mount keeps downloads between builds, outside the image.
RUN --mount=type=secret,id=pip-ca,required=false \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/incidentbot \
    && /opt/incidentbot/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/incidentbot/bin/pip install --constraint constraints.txt /wheels/incidentbot-*.whl \
    && /opt/incidentbot/bin/pip uninstall --yes pip \
    && /opt/incidentbot/bin/python -c "import incidentbot.cli"

# Final: the virtualenv alone, no compiler, no pip, no source tree; runs as an unprivileged user.
FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 incidentbot \
    && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/incidentbot --shell /usr/sbin/nologin incidentbot \
    && mkdir -p /var/lib/incidentbot/data /etc/incidentbot \
    && chown -R incidentbot:incidentbot /var/lib/incidentbot
COPY --from=builder /opt/incidentbot /opt/incidentbot
ENV PATH=/opt/incidentbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INCIDENTBOT_DATA_DIR=/var/lib/incidentbot/data \
    INCIDENTBOT_HTTP__HOST=0.0.0.0 \
    INCIDENTBOT_HTTP__PORT=8080
# SQLite lives here by default; set INCIDENTBOT_DATABASE_URL to use PostgreSQL instead.
VOLUME ["/var/lib/incidentbot/data"]
WORKDIR /var/lib/incidentbot
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('INCIDENTBOT_HTTP__PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["incidentbot"]
CMD ["serve"]
