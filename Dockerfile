# One image for the API and the worker (docker-compose.yml runs it both ways):
# (SIGTERM: the API drains open requests for up to 20 s, the worker its activities, then they exit)
#   API:    uvicorn --factory api.app:create_app --host 0.0.0.0 --port 8000   (the default command)
#   worker: python worker.py
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# An unprivileged user, and the data dir (grant store, signing keys) it owns.
# A named volume mounted on /data starts with this ownership.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app jit \
    && mkdir /data \
    && chown jit /data

# Only what runs: no tests, no dev tools (the Temporal dev server is not needed here).
COPY pyproject.toml README.md ./
COPY core core
COPY workflows workflows
COPY activities activities
COPY api api
COPY cli cli
COPY policy policy
COPY devstack devstack
COPY worker.py ./
COPY config config
RUN pip install .

USER jit
ENV JIT_DATA_DIR=/data \
    JIT_CATALOG_PATH=/app/config/catalog.yaml \
    JIT_POLICIES_DIR=/app/config/policies
VOLUME /data
# 8000: the API (and its /metrics); 9464: the worker's metrics (JIT_WORKER_METRICS_PORT)
EXPOSE 8000 9464

CMD ["uvicorn", "--factory", "api.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--forwarded-allow-ips", "*", "--timeout-graceful-shutdown", "20"]
