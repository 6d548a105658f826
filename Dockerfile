# HeadsUp bot: `headsup run` as an unprivileged user, with /healthz and /metrics on port 8080.
#   docker build -t headsup-bot .
#   docker run --env-file .env -p 8080:8080 headsup-bot
# See docs/operations.md (compose.yaml runs it with PostgreSQL).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY scheduler ./scheduler
COPY storage ./storage
RUN pip install . && rm -rf /src

# No root at run time. /data is the working directory: an optional config.toml goes there, and so
# does a SQLite file if HEADSUP_STORAGE__URL points at one (mount a volume to keep it).
RUN useradd --system --create-home --uid 10001 headsup \
    && mkdir /data && chown headsup:headsup /data
USER headsup
WORKDIR /data

# /healthz and /metrics; Slack's HTTP mode would also need slack.http_port (3000) published.
ENV HEADSUP_HTTP__PORT=8080
EXPOSE 8080

# 200 when the database answers and every platform is connected; anything else fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEADSUP_HTTP__PORT', '8080'), timeout=4)"]

CMD ["headsup", "run"]
