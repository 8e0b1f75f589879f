"""The operator's jobs: crash recovery, retention and the doctor's checks."""
