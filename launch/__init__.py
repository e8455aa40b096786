"""Driving Ray from outside it: the private local Ray of `lookalike serve`/`demo`
(`local_ray`), deploying the Serve app from its config (`serving`), and the ingest as a Ray
job (`jobs`). The core (`lookalike/`) never imports these; the CLI and the tests do."""
