"""Setup of traces, metrics and logs; HTTP server middleware; HTTP client hooks."""
