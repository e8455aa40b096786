# lookalike on Ray: the image for the Ray head and workers (docker-compose.yml, cluster.yaml).
# It installs the wheel, as a user's `pip install lookalike` would, never the checkout in
# editable mode: what the wheel lacks, the image lacks, and the tests catch it
# (tests/integration/test_packaging.py).
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.11-slim
# curl: the compose health checks; rsync: the Ray cluster launcher copies file_mounts with it.
RUN apt-get update && apt-get install -y --no-install-recommends curl rsync && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY constraints.txt ./
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir -c constraints.txt "$(ls /tmp/dist/lookalike-*.whl)[s3]" \
    && rm -rf /tmp/dist
# What the compose and cluster commands run from the working directory: the Serve configs (a
# deployment edits them) and `python ingest_job.py`; their code comes from the installed wheel.
COPY ingest_job.py serve_config.yaml serve_config.gpu.yaml ./
ENV HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
