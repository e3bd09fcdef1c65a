"""JSONL sink throughput: exactly-once PartitionFile writes against plain appends."""
