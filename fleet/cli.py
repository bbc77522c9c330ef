"""The `fleet` command: run a fleet of simulated IS 15959 meters, manage its database, export it.

A user's mistake gets one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import click

from fleet.errors import FleetError
from fleet.runtime import budget
from fleet.runtime.faults import Fault
from fleet.settings import (
    DEFAULT_ADDRESS_BASE,
    MODES,
    FleetOptions,
    RunSettings,
    ephemeral_ports,
    parse_shard,
    worker_shards,
)
from meter_core.connection import Transport
from meter_core.device.clock import IST
from meter_core.device.identity import DEFAULT_FLEET_SECRET, MeterKind, parse_mix

# Meters are installed in the three years before this instant (IST); cumulative registers start from
# there, so a fleet shows the same energies whenever and however often it is restarted.
FLEET_EPOCH = _dt.datetime(2026, 1, 1, tzinfo=IST).timestamp()

log = logging.getLogger("fleet")


def _fleet_options(f):
    """Options that identify a fleet and place its meters (shared by `run` and `meters export`)."""
    decorators = [
        click.option("--meters", default=1000, show_default=True, type=click.IntRange(min=1),
                     help="Number of meters in the fleet."),
        click.option("--seed", default=1, show_default=True, type=click.IntRange(0, 2**63 - 1),
                     help="Fleet seed: identities and measurements derive from it."),
        click.option("--fleet-secret", envvar="FLEET_SECRET", default=None,
                     help="Secret the meters' passwords and keys derive from (env FLEET_SECRET)."),
        click.option("--kind", type=click.Choice([k.value for k in MeterKind]), default="3ph", show_default=True,
                     help="Meter kind: 1ph, 3ph whole current, or ctpt (CT/PT operated)."),
        click.option("--mix", default=None,
                     help="Shares of meter kinds, e.g. 1ph=0.7,3ph=0.25,ctpt=0.05, or @FILE (TOML with a [mix] "
                          "table); overrides --kind."),
        click.option("--transport", type=click.Choice(["wrapper", "hdlc"]), default="wrapper", show_default=True,
                     help="Framing on each meter's TCP port: IEC 62056-47 wrapper or HDLC."),
        click.option("--mode", type=click.Choice(MODES), default="listen",
                     show_default=True, help="How a head-end reaches the meters: listen (each meter on its port), "
                                             "dial (each meter calls --hes to push, then serves it) or address "
                                             "(each meter at its own IP address, all on --port-base)."),
        click.option("--address-base", default=DEFAULT_ADDRESS_BASE, show_default=True,
                     help="--mode address: meter i is at this IPv4 or IPv6 address + i (127.0.0.0/8 is local on "
                          "Linux; another range with: ip route add local PREFIX dev lo, or ip -6 route add local "
                          "PREFIX/64 dev lo)."),
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address(es) the meters listen on, comma separated; more addresses give more ports."),
        click.option("--port-base", default=4059, show_default=True, type=click.IntRange(1, 65535),
                     help="Meter i listens on port-base + i, skipping the ephemeral port range (then the next --host)."),
        click.option("--shard", default="0/1", show_default=True, envvar="FLEET_SHARD",
                     help="K/M: serve the K-th of M equal parts of the fleet (one Kubernetes pod each; env "
                          "FLEET_SHARD, which deploy/kustomize sets from the pod's ordinal)."),
        click.option("--hls-mechanism", type=click.Choice(["high", "high-gmac", "high-ecdsa"]), default="high",
                     show_default=True,
                     help="How clients 48, 64 and 80 authenticate: HLS mechanism 2 (AES of the challenge, as "
                          "IS 15959 meters run it), 5 (GMAC) or 7 (ECDSA; needs --security-suite 1 or 2)."),
        click.option("--security-suite", type=click.IntRange(0, 2), default=0, show_default=True,
                     help="Security suite of clients 48, 64, 80: 0 and 1 AES-GCM-128, 2 AES-GCM-256."),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _build_options(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, shard,
                   hls_mechanism="high", security_suite=0, address_base=DEFAULT_ADDRESS_BASE) -> FleetOptions:
    hosts = tuple(h.strip() for h in host.split(",") if h.strip())
    if not hosts:
        raise FleetError("--host needs at least one address")
    for h in hosts:
        try:
            socket.inet_aton(h)
        except OSError:
            raise FleetError(f"--host {h!r} is not an IPv4 address") from None
    if shard.startswith("/"):  # deploy/kustomize: FLEET_SHARD=$(FLEET_SHARD_INDEX)/$(FLEET_SHARDS), no index
        raise FleetError(f"--shard {shard!r} has no K: a pod takes it from its label apps.kubernetes.io/pod-index "
                         "(FLEET_SHARD_INDEX), which Kubernetes sets from 1.28 on")
    return FleetOptions(
        meters=meters,
        seed=seed,
        fleet_secret=fleet_secret.encode() if fleet_secret else DEFAULT_FLEET_SECRET,
        kind=MeterKind(kind),
        mix=_parse_mix(mix),
        transport=Transport(transport),
        mode=mode,
        hosts=hosts,
        port_base=port_base,
        address_base=address_base,
        ephemeral=ephemeral_ports(),
        shard=parse_shard(shard),
        hls_mechanism={"high": 2, "high-gmac": 5, "high-ecdsa": 7}[hls_mechanism],
        security_suite=security_suite,
    )


def _parse_mix(text: str | None) -> tuple:
    """--mix KIND=SHARE,... or --mix @FILE (TOML: a [mix] table of KIND = SHARE)."""
    if text is None:
        return ()
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f).get("mix")
        except OSError as e:
            raise FleetError(f"--mix {text}: cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise FleetError(f"--mix {text}: not TOML: {e}") from None
        if not isinstance(table, dict) or not table:
            raise FleetError(f"--mix {text}: no [mix] table of KIND = SHARE")
        text = ",".join(f"{k}={v}" for k, v in table.items())
    try:
        return parse_mix(text)
    except ValueError as e:
        raise FleetError(f"--mix: {e}") from None


def _drift_option(f):
    return click.option("--drift-ppm", default=0.0, show_default=True, type=click.FloatRange(0.0, 500.0),
                        help="Meter clocks run up to this many ppm fast or slow (seeded per meter); 0 keeps them "
                             "exact.")(f)


def _database_option(f):
    f = click.option("--data-dir", envvar="FLEET_DATA_DIR", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Folder of the embedded PostgreSQL (env FLEET_DATA_DIR).")(f)
    return click.option("--database-url", envvar="FLEET_DATABASE_URL", default=None,
                        help="PostgreSQL to use instead of the embedded one (env FLEET_DATABASE_URL).")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cosem-fleet", prog_name="fleet")
def cli() -> None:
    """Simulate a fleet of DLMS/COSEM (IS 15959) smart meters for head-end and MDM testing."""


@cli.command()
@_fleet_options
@click.option("--workers", default=os.cpu_count() or 1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; meters are split between them.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="Simulated seconds per real second (900 plays a 15-minute interval in one second).")
@click.option("--start", "start", default=None,
              help="Simulated time at start, ISO 8601 (default: now), e.g. 2026-06-01T00:00:00+05:30.")
@click.option("--metrics-port", default=9464, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the Prometheus /metrics endpoint and /health (0 turns both off).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, envvar="FLEET_METRICS_HOST",
              help="Address /metrics and /health listen on (env FLEET_METRICS_HOST; 0.0.0.0 in a container).")
@click.option("--hes", default=None, help="HOST:PORT of the head-end the meters push to (--mode dial).")
@click.option("--dial-idle", default=30.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="Dial mode: seconds a meter's call stays open without a request from the head-end (pushes due "
                   "meanwhile go on the open call).")
@click.option("--source-base", default=None,
              help="Dial mode: meter i dials from this IPv4 address + i (e.g. 127.1.0.0: one address per meter).")
@_drift_option
@click.option("--spool-dir", envvar="FLEET_SPOOL_DIR", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where workers keep ground-truth rows while the database is away "
                                 "(env FLEET_SPOOL_DIR; default: next to the embedded data folder).")
@_database_option
def run(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, address_base, shard, hls_mechanism, security_suite,
        workers, speed, start, metrics_port, metrics_host, hes, dial_idle, source_base, drift_ppm, spool_dir,
        database_url, data_dir) -> None:
    """Start the fleet and serve until stopped (Ctrl-C or SIGTERM)."""
    from fleet.store import pg  # start-up time: loaded by the commands that use it

    options = _build_options(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, shard,
                             hls_mechanism, security_suite, address_base=address_base)
    hes_address = None
    if options.mode == "dial":
        if hes is None:
            raise FleetError("--mode dial needs --hes HOST:PORT (where the meters push to)")
        hes_host, _, hes_port = hes.rpartition(":")
        if not hes_host or not hes_port.isdigit() or not 0 < int(hes_port) < 65536:
            raise FleetError(f"--hes {hes!r}: expected HOST:PORT")
        hes_address = (hes_host, int(hes_port))
    elif hes is not None or source_base is not None:
        raise FleetError("--hes and --source-base are for --mode dial")
    if source_base is not None:
        try:
            socket.inet_aton(source_base)
            ipaddress.IPv4Address(source_base) + (options.meters - 1)
        except (OSError, ValueError, ipaddress.AddressValueError):
            raise FleetError(f"--source-base {source_base!r}: not an IPv4 address with room for "
                             f"{options.meters} meters") from None
    sim_start = _parse_start(start)
    fd_limit = budget.nofile_limit()
    budget.plan(worker_shards(options, workers), options.mode, fd_limit)  # before anything starts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fleet: %(message)s", stream=sys.stderr)
    if metrics_port:
        _check_port_free(metrics_host, metrics_port)
    data_dir = data_dir or pg.default_data_dir()
    url, server = pg.resolve_database(database_url, data_dir)
    multiproc: Path | None = None
    http = None
    try:
        applied = asyncio.run(_migrate(url))
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        # prometheus-client picks its value store when first imported, and fleet.metrics opens this
        # process's files as it defines the metrics: the folder is named (and empty) before that import.
        multiproc = Path(tempfile.mkdtemp(prefix="fleet-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
        # start-up: imported only now, prometheus-client picks its value store on first import (folder above)
        from fleet import metrics

        settings = RunSettings(
            options=options,
            workers=workers,
            speed=speed,
            sim_start=sim_start,
            sim_t0=time.monotonic(),
            epoch_start=FLEET_EPOCH,
            database_url=url,
            metrics_port=metrics_port or None,
            spool_dir=str(spool_dir or data_dir.parent / "spool"),
            drift_ppm=drift_ppm,
            hes=hes_address,
            source_base=source_base,
            dial_idle=dial_idle,
            fd_limit=fd_limit,
        )
        from fleet.runtime.supervisor import Supervisor  # start-up: it imports fleet.metrics (as above)

        pod = options.pod_range()

        def ready_line(sup) -> None:
            if options.mode == "dial":
                log.info("%d meters ready (%s, ids %d-%d) to push to %s:%d with %d worker(s); database %s",
                         len(pod), options.transport.value, pod.start, pod.stop - 1, *hes_address, len(sup.slots),
                         "embedded" if server is not None else pg.redact(url))
                return
            first, last = options.address(pod.start), options.address(pod.stop - 1)
            log.info(
                "%d meters ready (%s, ids %d-%d) on %s:%d .. %s:%d with %d worker(s); metrics %s; database %s",
                len(pod), options.transport.value, pod.start, pod.stop - 1, *first, *last, len(sup.slots),
                f"http://{metrics_host}:{metrics_port}/metrics" if metrics_port else "off",
                "embedded" if server is not None else pg.redact(url),
            )

        supervisor = Supervisor(settings, on_ready=ready_line, database=(
            pg.EmbeddedWatch(server) if server is not None else None))
        if metrics_port:
            http = metrics.serve(metrics_port, metrics_host, health=supervisor.health)
        supervisor.run()
        log.info("stopped")
    finally:
        if http is not None:
            http.shutdown()
            http.server_close()
        if multiproc is not None:
            shutil.rmtree(multiproc, ignore_errors=True)
        if server is not None:
            server.stop()


def _parse_start(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise FleetError(f"--start {text!r} is not an ISO 8601 date-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=IST)
    return t.timestamp()


def _check_port_free(host: str, port: int) -> None:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except (OSError, OverflowError) as e:
        raise FleetError(f"cannot serve metrics on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        s.close()


async def _migrate(url: str) -> list[str]:
    from fleet.store import migrations, pg  # start-up time: loaded by the commands that use it
    from fleet.store.defaults import seed_defaults  # start-up time: loaded by the commands that use it

    conn = await pg.connect(url)
    try:
        applied = await migrations.migrate(conn)
        await seed_defaults(conn)
        return applied
    finally:
        await conn.close()


@cli.group()
def db() -> None:
    """Manage the fleet's PostgreSQL schema."""


@db.command("migrate")
@_database_option
def db_migrate(database_url, data_dir) -> None:
    """Apply the migrations the database does not have yet."""
    from fleet.store import pg  # start-up time: loaded by the commands that use it

    url, server = pg.resolve_database(database_url, data_dir or pg.default_data_dir())
    try:
        applied = asyncio.run(_migrate(url))
    finally:
        if server is not None:
            server.stop()
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database is up to date")


@cli.command()
@_fleet_options
@click.option("--days", required=True, type=click.IntRange(1, 3650), help="Whole days of history to write.")
@click.option("--end", default=None,
              help="End of the window, ISO 8601 (default: today 00:00 IST); the window is the days before it.")
@click.option("--ids", "ids", default=None,
              help="Only these meter ids, as FIRST-LAST (inclusive), e.g. 0-999 (default: the whole fleet).")
@click.option("--jobs", default=os.cpu_count() or 1, show_default=True, type=click.IntRange(min=1),
              help="Processes computing and writing rows.")
@_drift_option
@_database_option
def backfill(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, address_base, shard, hls_mechanism,
             security_suite, days, end, ids, jobs, drift_ppm,
             database_url, data_dir) -> None:
    """Write DAYS days of profile history (block load, daily, billing, snapshots) for the fleet.

    The rows are what the meters serve: give the options `fleet run` gets (--drift-ppm included), and what
    the journal records head-ends and operators did to the meters is replayed. A run started later writes
    from the window's end. Resumable: run it again with the same arguments and it writes only the chunks
    not done.
    """
    from fleet.store import pg  # start-up time: loaded by the commands that use it
    from fleet.tools import backfill as bf  # start-up time: loaded by the commands that use it

    options = _build_options(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, shard, address_base=address_base)
    meter_ids = _parse_ids(ids, options.meters)
    end_time = None if end is None else _parse_start(end)
    if end_time is not None and end_time > time.time():
        raise FleetError("--end is in the future: meters have no history there yet")
    url, server = pg.resolve_database(database_url, data_dir or pg.default_data_dir())
    try:
        applied = asyncio.run(_migrate(url))
        if applied:
            click.echo(f"database migrated: {', '.join(applied)}", err=True)
        p = bf.plan(url, options, FLEET_EPOCH, days, end_time, meter_ids, drift_ppm=drift_ppm)

        def progress(done: int, total: int, rows: int, seconds: float) -> None:
            width = 30
            bar = "#" * (width * done // total) + "-" * (width - width * done // total)
            rate = rows / seconds if seconds > 0 else 0.0
            click.echo(f"\rbackfill [{bar}] {done}/{total} chunks, {rows:,} rows, {rate:,.0f} rows/s",
                       err=True, nl=done == total)

        chunks, rows, seconds = bf.run(p, jobs, progress)
    finally:
        if server is not None:
            server.stop()
    if chunks == 0:
        click.echo("backfill: nothing to do (every chunk of this window is written)")
    else:
        click.echo(f"backfill: {rows} rows for {len(meter_ids)} meters x {days} days in {seconds:.1f} s "
                   f"({rows / max(seconds, 1e-9):,.0f} rows/s)")


def _parse_ids(text: str | None, meters: int) -> range:
    if text is None:
        return range(meters)
    try:
        first, _, last = text.partition("-")
        a, b = int(first), int(last or first)
    except ValueError:
        raise FleetError(f"--ids {text!r}: expected FIRST-LAST, e.g. 0-999") from None
    if not 0 <= a <= b < meters:
        raise FleetError(f"--ids {text!r} is outside the fleet's meters 0-{meters - 1}")
    return range(a, b + 1)


@cli.group()
def meters() -> None:
    """Information about the fleet's meters."""


@meters.command("export")
@_fleet_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: one array of meter objects; csv: one row per meter and client.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
@click.option("--keys-from-database/--derived-keys", default=None,
              help="Show the keys in force as the fleet's database records them (after key transfers) or "
                   "the keys derived from the fleet secret. Default: the database when one is given or the "
                   "embedded one exists.")
@click.option("--ids", default=None,
              help="FIRST-LAST: only these meters (with --shard K/M: those of the shard's part among them).")
@click.option("--pod-dns", default=None, metavar="TEMPLATE",
              help="Each meter's host is the DNS name of the pod serving it: TEMPLATE with {k} the pod ordinal, "
                   "e.g. 'cosem-fleet-{k}.cosem-fleet.NAMESPACE.svc.cluster.local' (listen mode; the port stays "
                   "the meter's port in its pod). See deploy/kustomize.")
@click.option("--pods", default=None, type=click.IntRange(min=1), envvar="FLEET_SHARDS",
              help="--pod-dns: how many pods serve the fleet, pod k with --shard k/PODS (env FLEET_SHARDS; "
                   "default: M of --shard).")
@_database_option
def meters_export(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, address_base, shard, hls_mechanism,
                  security_suite, fmt, output, keys_from_database, ids, pod_dns, pods, database_url, data_dir) -> None:
    """Write the HES onboarding file: addresses, client SAPs, passwords and keys of every meter (or of
    --ids, or of --shard's part: the meters one pod of a sharded fleet serves)."""
    from fleet.store import pg  # start-up time: loaded by the commands that use it
    from fleet.tools import export  # start-up time: loaded by the commands that use it

    options = _build_options(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, shard,
                             hls_mechanism, security_suite, address_base=address_base)
    pod, chosen = options.pod_range(), _parse_ids(ids, options.meters)
    wanted = range(max(pod.start, chosen.start), min(pod.stop, chosen.stop))
    if not wanted:
        raise FleetError(f"--ids {ids} and --shard {shard} have no meter in common (the shard is {pod.start}-"
                         f"{pod.stop - 1})")
    pod_host = None if pod_dns is None else export.pod_dns(options, pod_dns, pods or options.shard[1])
    stored: dict = {}
    data_dir = data_dir or pg.default_data_dir()
    if keys_from_database is None:
        keys_from_database = bool(database_url or os.environ.get("FLEET_DATABASE_URL")) or (
            Path(data_dir) / "PG_VERSION").exists()
    if keys_from_database:
        url, server = pg.resolve_database(database_url, data_dir)
        try:
            stored = asyncio.run(export.stored_keys(url, wanted))
        finally:
            if server is not None:
                server.stop()
    write = functools.partial(export.write_json if fmt == "json" else export.write_csv, stored=stored, ids=wanted,
                              host=pod_host)
    if output is None:
        write(options, sys.stdout)
        return
    total = len(wanted)
    step = max(1, total // 100)
    show = sys.stderr.isatty() or total >= 10_000

    def progress(n: int) -> None:
        if show and (n % step == 0 or n == total):
            click.echo(f"\rexported {n}/{total} meters", err=True, nl=n == total)

    try:
        with open(output, "w", encoding="utf-8", newline="") as f:
            write(options, f, progress)
    except OSError as e:
        raise FleetError(f"cannot write {output}: {e.strerror}") from None


@cli.command("hes-sink")
@_fleet_options
@click.option("--listen", default="127.0.0.1:4063", show_default=True, help="HOST:PORT the meters push to.")
@click.option("--metrics-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the sink's Prometheus /metrics (pushes received by push setup, recorded, refused; 0: off).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, envvar="FLEET_METRICS_HOST",
              help="Address the sink's /metrics listens on (env FLEET_METRICS_HOST).")
@_database_option
def hes_sink(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, address_base, shard, hls_mechanism,
             security_suite, listen, metrics_port, metrics_host, database_url, data_dir) -> None:
    """Receive the meters' pushes, decipher them and record each in push_received (until Ctrl-C)."""
    from fleet.store import pg  # start-up time: loaded by the commands that use it
    from fleet.tools import export, sink  # start-up time: loaded by the commands that use it

    options = _build_options(meters, seed, fleet_secret, kind, mix, transport, mode, host, port_base, shard,
                             hls_mechanism, security_suite, address_base=address_base)
    listen_host, _, listen_port = listen.rpartition(":")
    if not listen_host or not listen_port.isdigit() or not 0 < int(listen_port) < 65536:
        raise FleetError(f"--listen {listen!r}: expected HOST:PORT")
    if metrics_port:
        _check_port_free(metrics_host, metrics_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fleet: %(message)s", stream=sys.stderr)
    url, server = pg.resolve_database(database_url, data_dir or pg.default_data_dir())
    http = None
    try:
        asyncio.run(_migrate(url))

        async def serve() -> None:
            nonlocal http
            directory = sink.Directory(options, await export.stored_keys(url, range(options.meters)))
            receiver = sink.PushSink(url, directory)
            try:
                await receiver.start(listen_host, int(listen_port))
            except OSError as e:
                raise FleetError(f"--listen {listen}: {e.strerror}") from None
            if metrics_port:
                from prometheus_client import CollectorRegistry  # start-up time: only with --metrics-port

                from fleet import metrics  # start-up time: only with --metrics-port

                source = CollectorRegistry()
                source.register(sink.SinkCollector(receiver))
                http = metrics.serve(metrics_port, metrics_host, health=lambda: (True, "listening"), source=source)
            log.info("hes-sink listening on %s for %d meters", listen, options.meters)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):  # stop taking pushes, write what was taken
                loop.add_signal_handler(sig, stop.set)
            try:
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), 10)
                    except TimeoutError:
                        pass
                    log.info("pushes received %d, recorded %d, refused %s, connections %d", receiver.received,
                             receiver.recorded, dict(receiver.refused) or 0, receiver.connections)
            finally:
                await receiver.stop()
                log.info("stopped: pushes received %d, recorded %d", receiver.received, receiver.recorded)

        asyncio.run(serve())
    finally:
        if http is not None:
            http.shutdown()
            http.server_close()
        if server is not None:
            server.stop()


@cli.command()
@click.argument("action", type=click.Choice([f.value for f in Fault]))
@click.option("--share", default=1.0, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Fraction of the region's meters it reaches (a seeded draw per command).")
@click.option("--region", default=None, metavar="FIRST-LAST",
              help="Meter ids it applies to (a feeder or substation: consecutive ids), e.g. 0-999. Default: all.")
@click.option("--duration", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Simulated seconds until it ends by itself (default: until `fleet inject restore`).")
@click.option("--code", type=click.Choice(["201", "203", "251"]), default="201", show_default=True,
              help="tamper: event code (201 magnet, 203 neutral disturbance, 251 cover open).")
@click.option("--factor", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="load-change: the load drawn times FACTOR (e.g. 1.5).")
@click.option("--wait", default=10.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds to wait for the running workers to apply it (0: do not wait).")
@_database_option
def inject(action, share, region, duration, code, factor, wait, database_url, data_dir) -> None:
    """Inject a power failure, restore, tamper, link fault or load change into a running fleet.

    The command goes through the fleet's database (the fleet_commands table; workers LISTEN for it) and
    applies to the meters of --region the seeded --share selects. A power failure sends the meters'
    last-gasp pushes (ESW bit 85, within the alert push's randomisation interval) and stops their
    load; `restore` brings supply and links back (first-breath pushes, ESW bit 86).
    """
    from fleet.store import commands, pg  # start-up time: loaded by the commands that use it

    first = last = None
    if region is not None:
        a, sep, b = region.partition("-")
        try:
            first, last = int(a), int(b if sep else a)
        except ValueError:
            raise FleetError(f"--region {region!r}: expected FIRST-LAST, e.g. 0-999") from None
        if not 0 <= first <= last:
            raise FleetError(f"--region {region!r}: expected FIRST-LAST with 0 <= FIRST <= LAST")
    params: dict = {}
    if duration is not None:
        params["duration_s"] = duration
    if action == "tamper":
        params["code"] = int(code)
    if action == "load-change":
        if factor is None:
            raise FleetError("load-change needs --factor (the load drawn times FACTOR)")
        params["factor"] = factor
    elif factor is not None:
        raise FleetError(f"--factor applies to load-change, not {action}")
    url, server = pg.resolve_database(database_url, data_dir or pg.default_data_dir())
    try:
        asyncio.run(_migrate(url))
        command_id = asyncio.run(commands.issue(url, action, first=first, last=last, share=share, params=params))
        click.echo(f"command {command_id}: {action} issued")
        if not wait:
            return
        deadline = time.monotonic() + wait
        seen = (0, 0)
        while time.monotonic() < deadline:
            time.sleep(min(0.2, wait))
            now_seen = asyncio.run(commands.results(url, command_id))
            if now_seen[0] and now_seen == seen:
                break  # the workers answer within moments of each other: none more for a while
            seen = now_seen
        if not seen[0]:
            raise FleetError(f"no fleet worker applied command {command_id} within {wait:g} s "
                             "(is a fleet running on this database?)")
        click.echo(f"command {command_id}: applied by {seen[0]} worker(s) to {seen[1]} meter(s)")
    finally:
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click without its tracebacks, one line per error."""
    try:
        rv = cli.main(args=argv, prog_name="fleet", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("fleet: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"fleet: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except FleetError as e:
        click.echo(f"fleet: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
