# idb-harvester: the daemon with Debian's Chromium and a Java 17 runtime for Flink.
# Keep in step with scripts/setup.sh (what it installs) and the Makefile.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      chromium openjdk-17-jre-headless fonts-liberation procps tini curl \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/default-java

WORKDIR /app
COPY pyproject.toml README.md ./
COPY harvester ./harvester
COPY flink_jobs ./flink_jobs
RUN pip install . \
 && useradd --create-home --uid 10001 harvester \
 && mkdir -p /config /var/lib/harvester \
 && chown harvester:harvester /var/lib/harvester

USER harvester
ENV JAVA_HOME=/usr/lib/jvm/default-java \
    HARVESTER_CONFIG=/config/harvester.toml
VOLUME ["/var/lib/harvester"]
EXPOSE 8787

# The daemon binds 127.0.0.1 by default; in a container set http.bind = "0.0.0.0" (or
# HARVESTER_HTTP__BIND=0.0.0.0) to publish the port. The health check runs inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${HARVESTER_HTTP__PORT:-8787}/healthz" || exit 1

ENTRYPOINT ["/usr/bin/tini", "--", "harvester"]
CMD ["run", "--config", "/config/harvester.toml"]
