# syntax=docker/dockerfile:1
# One image for every Flagyard server process; the command picks the plane:
#
#   control plane  uvicorn --factory flagyard.control_plane.main:app_from_env --host 0.0.0.0 --port 8000
#                  (the default CMD; /healthz, /readyz, /metrics on :8000)
#   syncer         python -m flagyard.syncer worker          (Prometheus on :9102, FLAGYARD_SYNCER_METRICS_PORT)
#   data plane     python -m flagyard.data_plane             (gRPC on :50051, Prometheus on :9464; flagd's gRPC
#                  protocols on :8013 RPC and :8015 sync, OFREP over HTTP on :8016)
#   migrations     alembic upgrade head                      (reads FLAGYARD_DATABASE_URL; run once per release)
#
# Configuration is FLAGYARD_* environment variables only (README.md, "Configuration").
# Build: docker build -t flagyard:dev .

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a venv with the package and its `server` extra (binary wheels exist for every compiled
# dependency on amd64 and arm64, so no compiler is installed here either) ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The package is the flagyard/ folder whose sub-packages are symlinks to the top-level folders; the
# wheel pip builds from them holds real files.
COPY pyproject.toml README.md ./
COPY flagyard ./flagyard
COPY rule_engine ./rule_engine
COPY control_plane ./control_plane
COPY syncer ./syncer
COPY contracts ./contracts
COPY db ./db
COPY data_plane ./data_plane
COPY sdk ./sdk
COPY cli ./cli
COPY proto ./proto
RUN pip install ".[server]" \
    && pip uninstall --yes setuptools wheel

# --- runtime: the venv, the migrations and nothing to build with ---
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="flagyard" \
      org.opencontainers.image.description="Flagyard control plane, syncer and data plane" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLAGYARD_LOG_JSON=true
RUN groupadd --system --gid 10001 flagyard \
    && useradd --system --uid 10001 --gid flagyard --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin flagyard
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# alembic.ini points at %(here)s/control_plane/migrations; env.py imports the installed package.
COPY alembic.ini ./
COPY control_plane/migrations ./control_plane/migrations
# Numeric, so Kubernetes can check runAsNonRoot against the image.
USER 10001:10001
EXPOSE 8000 9102 50051 9464 8013 8015 8016
CMD ["uvicorn", "--factory", "flagyard.control_plane.main:app_from_env", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
