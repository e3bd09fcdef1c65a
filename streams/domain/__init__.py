"""Pure domain logic: validation and routing decisions, event-time windows and their
aggregates, tiering, the job state machine, session and engine-status folds, input
limits, dead letters. Nothing here imports faust or aiokafka (a test enforces it), so
every rule is tested as plain functions and classes."""
