"""Web views of a worker: health and stats, windows, training, jobs, sessions and
engine status, Prometheus metrics, the dashboard page and its static files, and the
peers that lists and keyed views are gathered from or forwarded to."""
