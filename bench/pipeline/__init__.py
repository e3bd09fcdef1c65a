"""End-to-end pipeline benchmark: the whole worker against Quix Streams and a plain
aiokafka loop on the same events in the same run (see README.md)."""
