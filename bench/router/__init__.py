"""Router throughput benchmark: see README.md beside this file."""
