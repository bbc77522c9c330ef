"""deploy/kustomize rendered offline: `kubectl kustomize` (Debian's kubectl) builds each overlay, every object
is checked against the Kubernetes schemas (kubernetes-validate, strict), and the pods' arguments, read by the
fleet's own command line as a pod's environment gives them, split the fleet so that every meter is served by
exactly one pod.

No cluster here: what a kubelet does is done by hand (the downward API's pod-index label, the $(VAR)
expansion of env values and args). Without kubectl these tests are skipped, unless FLEET_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fleet.cli import _build_options, cli
from fleet.settings import LINUX_EPHEMERAL_PORTS
from fleet.tools.export import pod_dns

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
DASHBOARDS = ROOT / "grafana" / "dashboards"
# The oldest Kubernetes that labels a StatefulSet's pods with apps.kubernetes.io/pod-index: the objects are
# checked against its schemas (or the oldest the validator has past it) and the newest the validator has.
OLDEST_K8S = (1, 28)
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
# Custom resources the validator has no schema for: checked by hand below.
CRD_GROUPS = ("monitoring.coreos.com/",)
# What the base's memory request is computed for (deploy/kustomize/base/statefulset.yaml, its comment).
MIB = 1 << 20
RUN_PROCESS, RESOURCE_TRACKER, WORKER_FIXED = 53 * MIB, 15 * MIB, 51 * MIB
IDLE_METER, LIVE_METER, CACHED_PER_WORKER = 1070, 16 << 10, 2048


def need(tool: str):
    """The tool's path (kubectl) or module (kubernetes_validate); a skip when it is missing, a failure with
    FLEET_REQUIRE_TOOLS=1."""
    if tool == "kubectl":
        found = shutil.which("kubectl")
    else:
        try:
            import kubernetes_validate as found
        except ImportError:
            found = None
    if found is None:
        why = {"kubectl": "kubectl is not installed (Debian: apt-get install kubectl)",
               "kubernetes_validate": "kubernetes-validate is not installed (pip install '.[test]')"}[tool]
        if os.environ.get("FLEET_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{why}, and FLEET_REQUIRE_TOOLS=1")
        pytest.skip(why)
    return found


def render(path: Path, *, outside_files: bool = False) -> list[dict]:
    """``kubectl kustomize PATH``: the objects, in order."""
    cmd = [need("kubectl"), "kustomize", str(path)]
    if outside_files:
        cmd += ["--load-restrictor", "LoadRestrictionsNone"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def validate(objects: list[dict]) -> list[dict]:
    """Every object against the Kubernetes schemas, strict (no unknown field); returns the custom resources,
    which the validator has no schema for."""
    kv = need("kubernetes_validate")
    from kubernetes_validate.utils import all_versions  # (after `need`: the module may be missing)

    known = all_versions()  # ascending
    oldest = next((v for v in known if tuple(int(x) for x in v.split(".")[:2]) >= OLDEST_K8S), known[-1])
    skipped = []
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            skipped.append(obj)
            continue
        for v in sorted({oldest, known[-1]}):
            try:
                kv.validate(obj, v, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']} is not valid Kubernetes {v}: "
                                     f"{path}: {e.message}") from None
    return skipped


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def fleet_container(objects: list[dict]) -> dict:
    sts = one(objects, "StatefulSet", "cosem-fleet")
    (container,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "fleet"]
    return container


def _expand(text: str, env: dict[str, str]) -> str:
    """A kubelet's $(VAR) expansion: a defined variable is replaced, an undefined one left as written, $$ is $."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def pod_environment(objects: list[dict], container: dict, ordinal: int) -> dict[str, str]:
    """The environment the kubelet gives pod ``ordinal``'s container: envFrom, then env in order, each value
    expanded with the variables before it; secrets as their rendered value, or a stand-in."""
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in maps, f"envFrom names ConfigMap {ref}, which the overlay does not render"
        env.update(maps[ref]["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = _expand(var["value"], env)
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == POD_INDEX, ref
            env[var["name"]] = str(ordinal)
        else:
            key = ref["secretKeyRef"]
            secret = maps.get(key["name"])
            env[var["name"]] = (base64.b64decode(secret["data"][key["key"]]).decode() if secret
                                else f"stand-in for {key['name']}/{key['key']}")
    return env


def pod_options(objects: list[dict], ordinal: int, monkeypatch):
    """(FleetOptions, the `run` command's parameters) of pod ``ordinal``: its args and environment read by the
    fleet's own command line."""
    container = fleet_container(objects)
    env = pod_environment(objects, container, ordinal)
    args = [_expand(a, env) for a in container["args"]]
    # the image's entrypoint is `tini -- fleet` (deploy/container/Containerfile): the container gives fleet's args
    assert "command" not in container and args[0] == "run", args
    unresolved = [a for a in args if "$(" in a]
    assert not unresolved, f"args name variables the pod does not have: {unresolved}"
    with monkeypatch.context() as m:
        for name in [n for n in os.environ if n.startswith("FLEET_")]:
            m.delenv(name)
        for name, value in env.items():
            m.setenv(name, value)
        params = cli.commands["run"].make_context("run", args[1:]).params
    options = _build_options(params["meters"], params["seed"], params["fleet_secret"], params["kind"], params["mix"],
                             params["transport"], params["mode"], params["host"], params["port_base"], params["shard"],
                             params["hls_mechanism"], params["security_suite"], address_base=params["address_base"])
    # a pod's ephemeral ports are the kernel's default (net.ipv4.ip_local_port_range of its own namespace)
    return dataclasses.replace(options, ephemeral=LINUX_EPHEMERAL_PORTS), params


def memory_needed(meters: int, workers: int) -> int:
    """The arithmetic of base/statefulset.yaml's comment, in bytes."""
    return (RUN_PROCESS + RESOURCE_TRACKER + workers * WORKER_FIXED + meters * IDLE_METER
            + workers * CACHED_PER_WORKER * LIVE_METER)


def quantity(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


@pytest.mark.parametrize("replicas", [1, 3, 10])
def test_each_overlay_renders_valid_objects_and_serves_every_meter_once(replicas, monkeypatch):
    objects = render(KUSTOMIZE / "overlays" / f"replicas-{replicas}")
    assert validate(objects) == []
    assert collections.Counter(o["kind"] for o in objects) == {
        "ConfigMap": 1, "Service": 1, "StatefulSet": 1, "PodDisruptionBudget": 1, "Job": 1}
    sts, svc = one(objects, "StatefulSet"), one(objects, "Service")
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["replicas"] == replicas

    # Pod k is cosem-fleet-k.cosem-fleet.NAMESPACE.svc.cluster.local: a headless Service naming its pods.
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # Every pod runs the same arguments; only its ordinal differs, from the pod-index label.
    container = fleet_container(objects)
    env = {v["name"]: v for v in container["env"]}
    assert env["FLEET_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX
    assert env["FLEET_SHARDS"]["value"] == str(replicas)
    assert env["FLEET_SHARD"]["value"] == "$(FLEET_SHARD_INDEX)/$(FLEET_SHARDS)"
    owners = bytearray(0)
    pods = []
    for k in range(replicas):
        options, params = pod_options(objects, k, monkeypatch)
        assert options.shard == (k, replicas) and options.mode == "listen"
        if not owners:
            owners = bytearray(options.meters)
        served = options.pod_range()
        for meter_id in served:
            owners[meter_id] += 1
        pods.append((options, params, served))
    assert owners.count(1) == len(owners) > 0, "some meter is served by no pod, or by two"

    # Each pod listens on one port per meter: distinct within the pod, outside its ephemeral range.
    first, last = pods[0][0].ephemeral
    for options, _, served in pods:
        ports = [options.address(i)[1] for i in served]
        assert len(set(ports)) == len(ports), f"pod {options.shard[0]} has two meters on one port"
        assert all(1024 <= p < first or last < p <= 65535 for p in ports)

    # Memory: the request covers the arithmetic in the StatefulSet's comment for the largest pod.
    options, params, _ = pods[0]
    biggest = max(len(served) for _, _, served in pods)
    resources = container["resources"]
    assert quantity(resources["requests"]["memory"]) >= memory_needed(biggest, params["workers"])
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"])

    # /metrics and /health: on every address of the pod, scraped, and probed on the port the fleet serves.
    (metrics_port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    assert params["metrics_port"] == metrics_port and params["metrics_host"] == "0.0.0.0"
    annotations = pod["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port),
                           "prometheus.io/path": "/metrics"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "metrics"}, probe
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]

    # Secrets: the database URL and the fleet secret, for the pods and the migration Job alike.
    secrets = {(v["name"], v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
               for v in container["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    assert secrets == {("FLEET_DATABASE_URL", "cosem-fleet", "database-url"),
                       ("FLEET_SECRET", "cosem-fleet", "fleet-secret")}
    job = one(objects, "Job", "cosem-fleet-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert "command" not in migrate and migrate["args"] == ["db", "migrate"]
    assert migrate["image"] == container["image"] == "cosem-fleet:latest"
    assert {"name": "FLEET_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "cosem-fleet", "key": "database-url"}}
            } in migrate["env"]


def test_every_variable_a_pod_sets_is_read_by_the_fleet(monkeypatch):
    """A FLEET_* variable of the pod is either an option's env var of `fleet run` or used in its args."""
    objects = render(KUSTOMIZE / "overlays" / "replicas-3")
    container = fleet_container(objects)
    env = pod_environment(objects, container, 0)
    envvars = {p.envvar for p in cli.commands["run"].params if isinstance(p.envvar, str)}
    used = set(re.findall(r"\$\(([A-Z_]+)\)", " ".join(container["args"] + [
        v.get("value", "") for v in container["env"]])))
    unread = {name for name in env if name.startswith("FLEET_")} - envvars - used
    assert unread == set()
    assert {"FLEET_SHARD", "FLEET_DATABASE_URL", "FLEET_SECRET", "FLEET_METRICS_HOST", "FLEET_SPOOL_DIR"} <= envvars
    spool = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "spool"]
    assert spool == [env["FLEET_SPOOL_DIR"]]


def test_pod_dns_export_names_the_pod_that_serves_each_meter(monkeypatch):
    objects = render(KUSTOMIZE / "overlays" / "replicas-3")
    template = "cosem-fleet-{k}." + one(objects, "Service")["metadata"]["name"] + ".meters.svc.cluster.local"
    for k in range(3):
        options, _ = pod_options(objects, k, monkeypatch)
        host = pod_dns(options, template, 3)
        served = options.pod_range()
        assert {host(i) for i in served} == {f"cosem-fleet-{k}.cosem-fleet.meters.svc.cluster.local"}
        assert served.start == 0 or host(served.start - 1) != host(served.start)


def test_every_dashboard_is_in_the_grafana_component():
    listed = yaml.safe_load((KUSTOMIZE / "components" / "grafana-dashboards" / "kustomization.yaml").read_text())
    (generator,) = listed["configMapGenerator"]
    files = [ROOT / "deploy" / "kustomize" / "components" / "grafana-dashboards" / f for f in generator["files"]]
    assert sorted(f.resolve() for f in files) == sorted(DASHBOARDS.glob("*.json")), (
        "list every grafana/dashboards/*.json in components/grafana-dashboards/kustomization.yaml")


@pytest.fixture
def tree(tmp_path):
    """A copy of deploy/kustomize and grafana/dashboards at the same relative places (a placeholder
    dashboard when there is none yet, in this copy only), and an overlay using every component."""
    shutil.copytree(KUSTOMIZE, tmp_path / "deploy" / "kustomize")
    if DASHBOARDS.is_dir():
        shutil.copytree(DASHBOARDS, tmp_path / "grafana" / "dashboards")
    component = tmp_path / "deploy" / "kustomize" / "components" / "grafana-dashboards" / "kustomization.yaml"
    if not list(DASHBOARDS.glob("*.json")):
        (tmp_path / "grafana" / "dashboards").mkdir(parents=True, exist_ok=True)
        (tmp_path / "grafana" / "dashboards" / "placeholder.json").write_text('{"title": "placeholder"}')
        spec = yaml.safe_load(component.read_text())
        spec["configMapGenerator"][0]["files"] = ["../../../../grafana/dashboards/placeholder.json"]
        component.write_text(yaml.safe_dump(spec))
    everything = tmp_path / "deploy" / "kustomize" / "overlays" / "everything"
    everything.mkdir()
    spec = yaml.safe_load((KUSTOMIZE / "overlays" / "replicas-3" / "kustomization.yaml").read_text())
    spec["components"] = [f"../../components/{c}" for c in ("trial-postgres", "servicemonitor", "grafana-dashboards")]
    spec["images"] = [{"name": "cosem-fleet", "newName": "registry.example.com/hes/cosem-fleet", "newTag": "1.2.3"}]
    (everything / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def test_components_render_valid_objects(tree, monkeypatch):
    objects = render(tree / "deploy" / "kustomize" / "overlays" / "everything", outside_files=True)
    crds = validate(objects)

    # The ServiceMonitor, which the validator skips (a CRD): it selects the headless Service by its labels
    # and scrapes its metrics port; the pods' scrape annotation is off so that nothing is scraped twice.
    (monitor,) = crds
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    svc = one(objects, "Service", "cosem-fleet")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert {p["name"] for p in svc["spec"]["ports"]} >= {"metrics"}
    sts = one(objects, "StatefulSet", "cosem-fleet")
    assert sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "false"

    # The dashboards: one ConfigMap for Grafana's sidecar, each file as it is, under the 1 MiB an object may hold.
    dashboards = one(objects, "ConfigMap", "cosem-fleet-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    expected = sorted((tree / "grafana" / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [p.name for p in expected]
    for p in expected:
        assert dashboards["data"][p.name] == p.read_text()
        json.loads(dashboards["data"][p.name])
    assert sum(len(v.encode()) for v in dashboards["data"].values()) < 1 << 20

    # The trial PostgreSQL: the Secret it generates is the one every reference names, with every key asked.
    secret = one(objects, "Secret")
    refs = [v["valueFrom"]["secretKeyRef"] for o in objects if o["kind"] in ("StatefulSet", "Job")
            for c in o["spec"]["template"]["spec"]["containers"] for v in c.get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})]
    assert len(refs) == 4 and all(r["name"] == secret["metadata"]["name"] and r["key"] in secret["data"]
                                  for r in refs)
    options, params = pod_options(objects, 2, monkeypatch)
    assert params["database_url"] == "postgresql://fleet:fleet-trial@cosem-fleet-postgres:5432/fleet"
    assert options.fleet_secret == b"cosem-fleet-trial" and options.shard == (2, 3)
    one(objects, "Service", "cosem-fleet-postgres")

    # `images:` in an overlay renames the fleet's image for the pods and the migration alike.
    job = one(objects, "Job", "cosem-fleet-migrate")
    images = {c["image"] for o in (sts, job) for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example.com/hes/cosem-fleet:1.2.3"}


def test_trial_overlay_needs_nothing_created_beforehand(monkeypatch):
    objects = render(KUSTOMIZE / "overlays" / "trial")
    assert validate(objects) == []
    options, params = pod_options(objects, 0, monkeypatch)
    assert options.shard == (0, 1) and options.pod_range() == range(options.meters)
    assert params["database_url"].endswith("@cosem-fleet-postgres:5432/fleet")
    (wait,) = one(objects, "StatefulSet", "cosem-fleet")["spec"]["template"]["spec"]["initContainers"]
    assert "pg_isready -h cosem-fleet-postgres -p 5432" in wait["command"][-1]
    postgres = one(objects, "StatefulSet", "cosem-fleet-postgres")
    assert postgres["spec"]["serviceName"] == one(objects, "Service", "cosem-fleet-postgres")["metadata"]["name"]
