"""Request logs: records built on the data plane, written to Redis in batches, and queried."""
