"""Kafka I/O tools: the admin client (fail fast, create topics), Kafka's partitioner
and the packing of routed events into messages, tail, replay, window export, and the
synthetic engine fleet."""
