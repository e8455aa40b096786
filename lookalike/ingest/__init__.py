"""The ingest job's Ray-free parts: fetching, planning, the embedder stages, the worklist, the
writer and the summary. The Ray Data pipeline that runs them is `pipelines.ingest`."""
