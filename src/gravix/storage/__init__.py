"""Where facts live: the path scheme, durable file operations and locks, and publishing
sealed buffer files into raw (shared by rotation and recovery)."""
