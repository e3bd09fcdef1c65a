"""Validation micro-benchmark: see README.md beside this file."""
