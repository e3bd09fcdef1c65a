"""Configuration: every setting from the environment, the topic names and partition
counts, and the JSONL channels."""
