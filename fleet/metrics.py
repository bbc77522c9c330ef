"""Prometheus metrics of the fleet (prometheus-client, multiprocess mode).

Import this module only after ``PROMETHEUS_MULTIPROC_DIR`` names an empty folder (`fleet run` sets it
before anything imports prometheus-client; workers inherit it): prometheus-client picks its value store
when it is first imported, and each metric without labels opens its process's file (``counter_<pid>.db``
...) as this module defines it. Imported earlier, the supervisor's counters would live in its memory
only; emptied later, its files would be unlinked under it. Either way /metrics would not show them.
Workers do not touch the metric files per request: `WorkerMetrics` counts in plain ints and flushes
once a second.
"""

from __future__ import annotations

import bisect
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from meter_core.codec.errors import Failure
from meter_core.cosem.is15959 import ASSOCIATIONS
from meter_core.events import ReleaseReason

# The client SAPs a label may name: the meter's associations. A head-end (or a stranger) can put any
# number in the wrapper header or HDLC address before it authenticates; those are all "other", so
# the series stay bounded.
_CLIENT_LABELS = {a.client_sap: str(a.client_sap) for a in ASSOCIATIONS}


def client_label(client_sap: int) -> str:
    """The ``client`` label of a client SAP: its number if the meter has an association for it, else "other"."""
    return _CLIENT_LABELS.get(client_sap, "other")


class BatchedHistogram:
    """A histogram that a worker adds to a batch at a time: so many observations per bucket and their sum,
    once a second, not one ``observe()`` per request (about 3 us each in multiprocess mode, a quarter of
    what a GET costs). prometheus-client has no public call to add a batch to a Histogram, so the batch goes
    into two counters, which do have one (``inc(n)``): ``<name>_tally`` (observations per bucket, label
    ``le``, not cumulative) and ``<name>_tally_sum``; `Exposition` shows the two as the histogram ``name``
    itself, so what Prometheus scrapes is the same histogram an ``observe()`` per request would give."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.buckets = name, documentation, buckets
        self.bounds = tuple(floatToGoString(b) for b in buckets) + ("+Inf",)
        self.tally = Counter(name + "_tally", f"Observations of {name} per bucket, not cumulative (shown as the "
                             f"histogram {name})", ["le"])
        self.tally_sum = Counter(name + "_tally_sum", f"Sum of the observations of {name} (shown as its _sum)")

    def add(self, bucket_counts: list[int], total: float) -> None:
        """Add ``bucket_counts[i]`` observations to bucket i (up to the i-th bound, the last +Inf) and
        ``total`` to the sum: what that many ``observe()`` calls add."""
        for bound, n in zip(self.bounds, bucket_counts, strict=True):
            if n:
                self.tally.labels(bound).inc(n)
        self.tally_sum.inc(total)

    def family(self, tallies: dict[str, float], total: float) -> HistogramMetricFamily:
        """The histogram as exposed, from the tallies per bound and the sum read back from the counters."""
        cumulative, buckets = 0.0, []
        for bound in self.bounds:
            cumulative += tallies.get(bound, 0.0)
            buckets.append((bound, cumulative))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        return family


class Exposition(Collector):
    """What /metrics shows: every family of ``source`` (the multiprocess files, or a registry), except the
    tally counters of each `BatchedHistogram`, which it shows as the histogram they count."""

    def __init__(self, source: Collector, histograms: Iterable[BatchedHistogram]) -> None:
        self.source = source
        self.histograms = tuple(histograms)

    def collect(self) -> Iterator[Metric]:
        tallies = {h.tally.describe()[0].name: ({}, h) for h in self.histograms}
        sums = {h.tally_sum.describe()[0].name: h for h in self.histograms}
        totals = {h: 0.0 for h in self.histograms}
        for family in self.source.collect():
            if family.name in tallies:
                counts, _ = tallies[family.name]
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["le"]] = counts.get(sample.labels["le"], 0.0) + sample.value
            elif family.name in sums:
                h = sums[family.name]
                totals[h] += sum(s.value for s in family.samples if s.name.endswith("_total"))
            else:
                yield family
        for counts, h in tallies.values():
            yield h.family(counts, totals[h])

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   1.0)

METERS_ONLINE = Gauge("fleet_meters_online", "Meters listening for a head-end", multiprocess_mode="livesum")
CONNECTIONS_OPEN = Gauge("fleet_connections_open", "TCP connections open to meters", multiprocess_mode="livesum")
ASSOCIATIONS_OPEN = Gauge("fleet_associations_open", "Application associations open", ["client"],
                          multiprocess_mode="livesum")
ASSOCIATIONS = Counter("fleet_associations", "AARQs answered, by client SAP and result", ["client", "result"])
RELEASES = Counter("fleet_association_releases", "Associations ended, by client SAP and reason",
                   ["client", "reason"])
REQUESTS = Counter("fleet_requests", "xDLMS requests served, by client SAP, service and result",
                   ["client", "service", "result"])
LATENCY = BatchedHistogram("fleet_request_latency_seconds", "Time a meter takes to answer one chunk of requests",
                           LATENCY_BUCKETS)
BYTES_IN = Counter("fleet_bytes_received", "Bytes received from head-ends")
BYTES_OUT = Counter("fleet_bytes_sent", "Bytes sent to head-ends")
CONNECTIONS_REFUSED = Counter("fleet_connections_refused", "Connections accepted and closed at once, by reason: "
                              "fd-budget (the worker holds all it may), max-connections, no-supply, link-down",
                              ["reason"])
PROTOCOL_VIOLATIONS = Counter("fleet_protocol_violations", "Bad input answered or dropped, by layer", ["layer"])
PUSHES = Counter("fleet_pushes", "Pushes by push setup, meter group (its kind: 1ph, 3ph, ctpt) and outcome: due, "
                 "attempted, sent, retried, failed, no-supply (due while the meter had no supply: not owed)",
                 ["push", "group", "outcome"])
PUSH_FAILURES = Counter("fleet_push_failures", "Pushes failed for good, by push setup and the last attempt's "
                        "reason: refused, timeout, link-down, unconfirmed, queue-full", ["push", "reason"])
PUSH_LATENCY_BUCKETS = (0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
PUSH_LATENCY = BatchedHistogram("fleet_push_latency_seconds", "Simulated seconds from a push's due time (its "
                                "randomisation included) to its send, retries included", PUSH_LATENCY_BUCKETS)
DIALS = Counter("fleet_dials", "Calls meters placed to the head-end (dial mode), by outcome: connected, refused, "
                "timeout, link-down", ["outcome"])
SECURITY_FAILURES = Counter("fleet_security_failures",
                            "Protected requests and HLS replies refused, by client SAP and reason",
                            ["client", "reason"])
INTERNAL_ERRORS = Counter("fleet_internal_errors", "Faults inside a meter while serving a request")
DB_ROWS = Counter("fleet_db_rows_written", "Rows written to PostgreSQL, by table", ["table"])
# The connection recorder's queue (fleet/store/recorder.py); the ground-truth writer has gauges of its own below.
DB_QUEUE = Gauge("fleet_db_writer_queue_depth", "Connection and association events waiting in the recorders' "
                 "queues", multiprocess_mode="livesum")
DB_LAG = Gauge("fleet_db_writer_lag_seconds", "Age of the oldest connection or association event not yet written",
               multiprocess_mode="livemax")  # a dead worker's last lag goes with it
DB_BACKPRESSURE = Counter("fleet_db_writer_backpressure", "Recorder events that found its queue full, and "
                          "ground-truth passes held back by a full queue")
DB_ERRORS = Counter("fleet_db_writer_errors", "Failed steps of the writers, all reasons (retried)")
DB_DISCARDED = Counter("fleet_db_writer_discarded", "Events of batches the database refused for good (logged)")
# The ground-truth writer of each worker (fleet/store/truth.py), one series per shard "first-stop".
GROUNDTRUTH_ROWS_WAITING = Gauge("fleet_groundtruth_rows_waiting", "Profile rows computed and not yet written: "
                                 "queued in memory plus spooled on disk", ["shard"], multiprocess_mode="livesum")
GROUNDTRUTH_SPOOL_ROWS = Gauge("fleet_groundtruth_spool_rows", "Profile rows waiting in the spool folder",
                               ["shard"], multiprocess_mode="livesum")
GROUNDTRUTH_SPOOL_FILES = Gauge("fleet_groundtruth_spool_files", "Batches waiting in the spool folder", ["shard"],
                                multiprocess_mode="livesum")
GROUNDTRUTH_LAG = Gauge("fleet_groundtruth_lag_seconds", "Simulated seconds of captures due that the ground-truth "
                        "writer has not computed yet (0 when it is up to date)", ["shard"],
                        multiprocess_mode="livemax")
GROUNDTRUTH_SPOOLED = Counter("fleet_groundtruth_spooled_rows", "Profile rows moved to the spool because they "
                              "could not be written")
GROUNDTRUTH_ERRORS = Counter("fleet_groundtruth_errors", "Failed steps of the ground-truth writer (retried with "
                             "back-off), by reason: database, too-many-open-files, spool, internal", ["reason"])
GROUNDTRUTH_RESTARTS = Counter("fleet_groundtruth_restarts", "Ground-truth writer loops restarted after a fault")
WORKER_RESTARTS = Counter("fleet_worker_restarts", "Workers restarted by the supervisor")
DATABASE_RESTARTS = Counter("fleet_database_restarts",
                            "Times the supervisor restarted the embedded PostgreSQL after it died")
WORKERS_UP = Gauge("fleet_workers_up", "Worker processes running", multiprocess_mode="livesum")


HISTOGRAMS = (LATENCY, PUSH_LATENCY)


def registry(source: Collector | None = None) -> CollectorRegistry:
    """The registry /metrics serves: the metric files of every process (or ``source``), as `Exposition`
    shows them."""
    reg = CollectorRegistry()
    reg.register(Exposition(MultiProcessCollector(None) if source is None else source, HISTOGRAMS))
    return reg


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # a scrape a second is not news
        pass


def serve(port: int, host: str = "127.0.0.1", health: Callable[[], tuple[bool, str]] | None = None,
          source: CollectorRegistry | None = None):
    """Serve /metrics of all processes, and /health, on ``host``:``port`` (a thread in the supervisor);
    returns the server (``shutdown()`` and ``server_close()`` stop it).

    ``GET /health`` answers 200 with ``health()``'s text when it says ready, 503 otherwise (or while
    ``health`` is None: nothing to ask yet). Every other path is the metrics, as prometheus-client serves
    them: every process's (`registry`), or ``source``'s."""
    metrics_app = make_wsgi_app(source if source is not None else registry())

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/health":
            ok, text = health() if health is not None else (False, "starting")
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode() + b"\n"]
        return metrics_app(environ, start_response)

    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    httpd = make_server(host, port, app, server_class, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd


# The label values each counter takes (the help texts list them too): `show_zeros` starts them at 0.
REFUSAL_REASONS = ("fd-budget", "max-connections", "no-supply", "link-down", "not-a-meter")
VIOLATION_LAYERS = ("wrapper", "hdlc", "apdu")
DIAL_OUTCOMES = ("connected", "refused", "timeout", "link-down")
PUSH_OUTCOMES = ("due", "attempted", "sent", "retried", "failed", "no-supply", "confirmed", "unconfirmed",
                 "queue-full")
PUSH_FAILURE_REASONS = ("refused", "timeout", "link-down", "unconfirmed", "queue-full")
GROUNDTRUTH_ERROR_REASONS = ("database", "too-many-open-files", "spool", "internal")


def show_zeros(*, pushes: Iterable[str] = (), groups: Iterable[str] = (), groundtruth: bool = False) -> None:
    """Write every label set of the fleet's counters that a dashboard or an alert looks for, at 0 (this
    process's share of it), so each series is there from the start: a counter whose series appears only at
    its first event is missing from rate() and increase() for that first step, and a ratio of two of them
    shows "no data" instead of 0 (the Prometheus instrumentation guide's "avoid missing metrics").
    ``pushes``/``groups``: the push setups a dialling worker can send and the meter groups (kinds) it holds.
    A worker calls it once, when it is ready; values only come from the known sets, never from a peer."""
    clients = (*sorted(set(_CLIENT_LABELS.values()), key=int), "other")
    for client in clients:
        ASSOCIATIONS_OPEN.labels(client)
        for result in ("accepted", "rejected"):
            ASSOCIATIONS.labels(client, result)
        for reason in ReleaseReason:
            RELEASES.labels(client, reason.value)
        for failure in Failure:
            SECURITY_FAILURES.labels(client, failure.value)
    for reason in REFUSAL_REASONS:
        CONNECTIONS_REFUSED.labels(reason)
    for layer in VIOLATION_LAYERS:
        PROTOCOL_VIOLATIONS.labels(layer)
    groups = tuple(groups)
    for push in pushes:
        for group in groups:
            for outcome in PUSH_OUTCOMES:
                PUSHES.labels(push, group, outcome)
        for reason in PUSH_FAILURE_REASONS:
            PUSH_FAILURES.labels(push, reason)
    if groups:
        for outcome in DIAL_OUTCOMES:
            DIALS.labels(outcome)
    if groundtruth:
        for reason in GROUNDTRUTH_ERROR_REASONS:
            GROUNDTRUTH_ERRORS.labels(reason)


def process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn users do this in ``child_exit``)."""
    mark_process_dead(pid)


class WorkerMetrics:
    """Per-worker tallies, pushed to the prometheus files by `flush` (once a second)."""

    __slots__ = ("latency_counts", "latency_sum", "bytes_in", "bytes_out", "_last_requests", "refused",
                 "violations", "internal_errors", "associations", "releases", "security_failures", "pushes",
                 "push_latency", "dials", "push_failures", "associations_open", "_open_shown")

    def __init__(self) -> None:
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self._last_requests: dict[tuple[str, str, str], int] = {}
        self.refused: dict[str, int] = {}
        self.violations: dict[str, int] = {}
        self.internal_errors = 0
        # keyed by (client label, outcome): `client_label`, so a stranger cannot grow them
        self.associations: dict[tuple[str, str], int] = {}
        self.releases: dict[tuple[str, str], int] = {}
        self.security_failures: dict[tuple[str, str], int] = {}
        self.pushes: dict[tuple[str, str], int] = {}
        self.push_latency: list[float] = []
        self.dials: dict[str, int] = {}
        self.push_failures: dict[tuple[str, str], int] = {}
        # associations open now, by client label: shown as gauges at each flush (a gauge in the multiprocess
        # files costs a locked write per change: two per association)
        self.associations_open: dict[str, int] = {}
        self._open_shown: dict[str, int] = {}

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def flush(self, stats, connections_open: int) -> None:
        """Add what happened since the last flush; ``stats`` is the worker's ServiceStats (its clients'
        apart), ``connections_open`` the connections the worker holds now."""
        CONNECTIONS_OPEN.set(connections_open)
        shown = self._open_shown
        for client, n in self.associations_open.items():
            if shown.get(client) != n:
                ASSOCIATIONS_OPEN.labels(client).set(n)
                shown[client] = n
        last = self._last_requests
        for client, counts in _by_client(stats):
            for (service, result), n in list(counts.items()):
                key = (client, service, result)
                delta = n - last.get(key, 0)
                if delta:
                    REQUESTS.labels(*key).inc(delta)
                    last[key] = n
        counts = self.latency_counts
        if any(counts):
            LATENCY.add(counts, self.latency_sum)
            self.latency_counts = [0] * len(counts)
            self.latency_sum = 0.0
        if self.bytes_in:
            BYTES_IN.inc(self.bytes_in)
            self.bytes_in = 0
        if self.bytes_out:
            BYTES_OUT.inc(self.bytes_out)
            self.bytes_out = 0
        if self.internal_errors:
            INTERNAL_ERRORS.inc(self.internal_errors)
            self.internal_errors = 0
        for counter, counts in ((CONNECTIONS_REFUSED, self.refused), (PROTOCOL_VIOLATIONS, self.violations),
                                (ASSOCIATIONS, self.associations), (RELEASES, self.releases),
                                (SECURITY_FAILURES, self.security_failures), (PUSHES, self.pushes),
                                (DIALS, self.dials), (PUSH_FAILURES, self.push_failures)):
            _add_counts(counter, counts)
        if self.push_latency:
            counts = [0] * (len(PUSH_LATENCY_BUCKETS) + 1)
            for x in self.push_latency:
                counts[bisect.bisect_left(PUSH_LATENCY_BUCKETS, x)] += 1
            PUSH_LATENCY.add(counts, sum(self.push_latency))
            self.push_latency.clear()


def _by_client(stats) -> Iterator[tuple[str, dict]]:
    """(client label, request counts) of a worker's `ServiceStats`: each client's, then what no association
    served ("other")."""
    for client_sap, client_stats in list(stats.clients.items()):
        yield client_label(client_sap), client_stats.counts
    yield "other", stats.counts


def _add_counts(counter: Counter, counts: dict) -> None:
    """Add each label set's tally to ``counter`` and forget them; a key is a label value or a tuple of them
    (a client SAP is shown as its number)."""
    for key, n in counts.items():
        counter.labels(*(str(v) for v in (key if isinstance(key, tuple) else (key,)))).inc(n)
    counts.clear()
