"""A small application instrumented with the official Python client
(prometheus_client from PyPI), serving /metrics on the port given as argv[1].
It asks for every metric kind the client has, with exemplars, so a scrape in
OpenMetrics exercises the whole format."""

import sys
import time

from prometheus_client import (Counter, Enum, Gauge, Histogram, Info, Summary,
                               start_http_server)

requests = Counter("app_requests", "Requests handled.", ["path", "code"])
latency = Histogram("app_latency_seconds", "Request latency.", ["path"])
in_flight = Gauge("app_in_flight", "Requests in flight.")
size = Summary("app_response_size_bytes", "Response sizes.")
build = Info("app_build", "Build information.")
state = Enum("app_state", "Lifecycle state.", states=["starting", "running", "stopping"])

build.info({"version": "1.2.3", "revision": 'quote " and \\ backslash'})
state.state("running")
in_flight.set(3)
for i in range(20):
    requests.labels(path="/api/v1", code="200").inc()
    latency.labels(path="/api/v1").observe(0.05 * i, exemplar={"trace_id": f"abc{i}"})
    size.observe(1024 * i)
requests.labels(path="/weird\npath", code="500").inc(2)

start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(1)
