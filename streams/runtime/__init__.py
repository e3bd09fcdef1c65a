"""The faust runtime: the app, the worker that wires every agent and view, the
consumer that keeps each partition in offset order, the bulk path, the stall guard,
the fail-fast exit, and the launcher of worker processes. The only package that
knows faust's internals."""
