"""`gravix ingest-server`: HTTP ingestion that fsyncs before it answers, and rotation of the
buffer into raw."""
