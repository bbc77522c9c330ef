"""/health next to /metrics: 503 until the supervisor says every worker is ready, 200 then; /metrics as before."""

from __future__ import annotations

import urllib.error
import urllib.request

from fleet import metrics
from tests.servers import free_port_base


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_follows_the_supervisor_and_metrics_stay_served(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the supervisor's folder of worker files
    state = {"ready": False}
    port = free_port_base(1)
    httpd = metrics.serve(port, "127.0.0.1", health=lambda: (state["ready"], "1 of 2 workers ready"))
    try:
        assert get(port, "/health") == (503, "1 of 2 workers ready\n")
        state["ready"] = True
        assert get(port, "/health") == (200, "1 of 2 workers ready\n")
        assert get(port, "/metrics")[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
    port = free_port_base(1)
    httpd = metrics.serve(port, "127.0.0.1")  # nothing to ask yet: not ready
    try:
        assert get(port, "/health") == (503, "starting\n")
    finally:
        httpd.shutdown()
        httpd.server_close()
