"""SQLite storage: the durable journal with its projections, and the roster."""
