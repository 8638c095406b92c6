"""Helpers for scripts/bench.py, the proxy's benchmark.

Each of `upstream` and `loadgen` runs as its own process (`python -m benchlib.upstream`,
`python -m benchlib.loadgen`); `session` starts and measures them with the proxy, and
`report` renders the results. Everything speaks raw HTTP/1.1 on uvloop so that the
fake upstream and the load generator stay far cheaper per request than the proxy.
"""
