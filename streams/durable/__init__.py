"""Exactly-once bookkeeping and durable files: the JSONL partition files and their
checkpoints, atomic replace, the model store, the router's ledgers, and the read-back
of what was already written to an output partition (tails)."""
