"""Faust agents: thin wiring of the pure logic modules to topics."""
