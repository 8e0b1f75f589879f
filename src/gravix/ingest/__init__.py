"""`gravix ingest-server`: HTTP ingestion that fsyncs before it answers, and rotation of the
buffer into raw. app (dispatch), guard (auth, rate limit, admission), body (read, gunzip,
limits), singles (grouped single events), buffer (group commit, rotation), files (the
buffer's file steps), routes (route table, error and response bodies), openapi (the
document, generated), metrics, logs, process (serve, workers, signals)."""
