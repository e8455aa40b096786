# lookalike on Ray: the image for the Ray head and workers (docker-compose.yml, cluster.yaml).
FROM python:3.11-slim
# curl: the compose health checks; rsync: the Ray cluster launcher copies file_mounts with it.
RUN apt-get update && apt-get install -y --no-install-recommends curl rsync && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY lookalike ./lookalike
COPY deployments ./deployments
COPY pipelines ./pipelines
COPY launch ./launch
COPY web ./web
COPY serve_app.py ingest_job.py serve_config.yaml serve_config.gpu.yaml ./
RUN pip install --no-cache-dir -c constraints.txt -e ".[s3]"
ENV HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
