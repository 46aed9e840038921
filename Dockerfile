# syntax=docker/dockerfile:1
#
# amberflo-connector image. One image runs every command of the CLI:
#   docker run IMAGE                       -> amberflo-connector run
#   docker run IMAGE emulator --host 0.0.0.0 --db /data/emulator.db
#   docker run IMAGE dlq inspect ...
# Build:  docker build -t amberflo-connector .
# Extras: the image always has [s3] (boto3, for CONNECTOR_SINK__MODE=s3) and, by default,
#         [emulator] (the local Amberflo API's web stack, for `docker run IMAGE emulator`);
#         docker build --build-arg EXTRAS=demo -t amberflo-connector:demo .
#         (adds the embedded Tansu broker and the local S3 server `demo` needs);
#         docker build --build-arg EXTRAS= -t amberflo-connector:lean . (run, dlq, s3 only)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stage: resolve and install into a self-contained virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build

ARG EXTRAS="emulator"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN if [ -n "$EXTRAS" ]; then pip install "./[s3,${EXTRAS}]"; else pip install "./[s3]"; fi \
 && amberflo-connector --version

# ---- runtime stage: the virtualenv and a non-root user, nothing else ----------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="amberflo-connector" \
      org.opencontainers.image.description="Kafka to Amberflo usage-metering connector" \
      org.opencontainers.image.licenses="Apache-2.0"

ARG UID=10001
RUN groupadd --system --gid ${UID} connector \
 && useradd --system --uid ${UID} --gid connector --home-dir /home/connector \
        --create-home --shell /usr/sbin/nologin connector \
 && mkdir -p /data /etc/amberflo-connector \
 && chown connector:connector /data

COPY --from=build /opt/venv /opt/venv

# No .pyc writes and unbuffered logs: the image runs fine on a read-only root filesystem.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER ${UID}:${UID}
WORKDIR /home/connector
VOLUME ["/data"]

# /metrics (Prometheus), /healthz (liveness), /readyz (readiness)
EXPOSE 9400

ENTRYPOINT ["amberflo-connector"]
CMD ["run"]
