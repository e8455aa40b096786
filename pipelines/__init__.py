"""Ray Data pipelines over the core's stages (the ingest job's: `pipelines.ingest`)."""
