"""The real environment a benchmark runs in.

- ``Cluster``: a ``sandbox.controlplane.ControlPlane`` (kube-apiserver, etcd, controller
  manager, scheduler, kwok) with the CanaryRelease CRD, apps, extra kwok nodes, client
  identities and the API server's own request counters.
- ``Prometheus``: a ``sandbox.prometheus.PrometheusServer`` and its own query counters.

The engine under measurement is ``bench.engine.BenchEngine``; the watches that timestamp
changes are in ``bench.watch``.

Server-side request counts per client come from API Priority and Fairness: every client
the benchmark wants to count gets its own user (a client certificate from the cluster's
CA), bound to ``cluster-admin``, and its own FlowSchema; the API server then counts that
client's requests in ``apiserver_flowcontrol_dispatched_requests_total{flow_schema=…}``.
``apiserver_request_total`` has no client label, so it only gives totals of all clients
(controller manager, scheduler, kwok and the benchmark's own traffic simulators included).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import re
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from sandbox.controlplane import KWOK_NODE_ANNOTATION, ControlPlane
from sandbox.polling import wait_for as wait_until
from sandbox.prometheus import PrometheusServer
from sandbox.sample_app import podinfo_manifests

REPO = Path(__file__).resolve().parents[1]
CRD_PATH = REPO / "manifests" / "crds" / "crd.yaml"
# installed too, as in a real install: without it the engine's Canary informer is not
# served and the revision loop reads Canaries from the server every 2 s
CANARY_CRD_PATH = REPO / "manifests" / "crds" / "canaries.yaml"
TRAFFIC_JOB = "ingress-nginx"

Log = Callable[[str], None]





# -- metrics text ----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str, names: set[str]) -> list[tuple[str, dict[str, str], float]]:
    """The samples of the metrics in ``names`` from a Prometheus text exposition.

    A line filter rather than a full parser: the API server's /metrics is megabytes of
    histograms, and only a few counters matter here.
    """
    samples = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        cut = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        if cut < 0 or line[:cut] not in names:
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def total(samples: list[tuple[str, dict[str, str], float]], **labels: str) -> float:
    """Sum of samples whose labels include ``labels``."""
    return sum(v for _, got, v in samples if all(got.get(k) == w for k, w in labels.items()))


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class Identity:
    """A client of the API server with its own kubeconfig and FlowSchema."""

    user: str
    kubeconfig: Path
    flow_schema: str


class Cluster:
    """A control plane for one benchmark, with helpers to populate and measure it."""

    def __init__(self, workdir: Path, log: Log) -> None:
        self.workdir = workdir
        self.log = log
        self.cp = ControlPlane(workdir / "cluster")
        self.api: k8s.ApiClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._extra_nodes = 0

    # lifecycle

    def start(self) -> Cluster:
        """Start the control plane and install canary-bot's CRDs."""
        self.log("starting the control plane (kube-apiserver, etcd, kcm, scheduler, kwok)")
        started = time.monotonic()
        self.cp.start()
        self.api = k8s_config.new_client_from_config(config_file=str(self.cp.kubeconfig))
        self.install_crds(CRD_PATH)
        self.install_crds(CANARY_CRD_PATH)
        self.log(f"control plane ready in {time.monotonic() - started:.0f}s at {self.cp.server}")
        return self

    def stop(self) -> None:
        """Stop every component."""
        if self.api is not None:
            self.api.close()
            self.api = None
        self.cp.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def client(self) -> k8s.ApiClient:
        """The admin API client."""
        assert self.api is not None, "the cluster is not started"
        return self.api

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.cp.kubeconfig

    # objects

    def install_crds(self, path: Path) -> list[str]:
        """Create every CRD in a (multi-document) YAML file and wait until each serves."""
        ext = k8s.ApiextensionsV1Api(self.client)
        names = []
        for body in yaml.safe_load_all(path.read_text()):
            if not body or body.get("kind") != "CustomResourceDefinition":
                continue
            with contextlib.suppress(ApiException):
                ext.create_custom_resource_definition(body)
            names.append(body["metadata"]["name"])

        def established() -> bool:
            for name in names:
                status = ext.read_custom_resource_definition(name).status
                if not any(
                    c.type == "Established" and c.status == "True" for c in status.conditions or []
                ):
                    return False
            return True

        wait_until(established, 60, f"CRDs {names} to be Established")
        served = [_served_version(body) for body in yaml.safe_load_all(path.read_text()) if body]
        objects = k8s.CustomObjectsApi(self.client)

        def listable() -> bool:
            # Established comes before the storage answers (a list is 404, then 429 for a
            # moment): an engine started then would read those kinds by name for a while
            for group, version, plural in (entry for entry in served if entry is not None):
                try:
                    objects.list_cluster_custom_object(group, version, plural, limit=1)
                except ApiException:
                    return False
            return True

        wait_until(listable, 60, f"CRDs {names} to answer a list")
        return names

    def create_namespace(self, name: str) -> None:
        """Create a namespace and wait for its default ServiceAccount (Pods need it)."""
        core = k8s.CoreV1Api(self.client)
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": name}})

        def has_account() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
                return True
            except ApiException:
                return False

        wait_until(has_account, 60, f"ServiceAccount {name}/default")

    def add_nodes(self, count: int, pods_per_node: int = 500) -> None:
        """Add kwok-managed Nodes (one holds at most ``pods_per_node`` Pods)."""
        core = k8s.CoreV1Api(self.client)
        for index in range(self._extra_nodes, self._extra_nodes + count):
            name = f"kwok-bench-{index}"
            capacity = {"cpu": "64", "memory": "256Gi", "pods": str(pods_per_node)}
            body = {
                "metadata": {
                    "name": name,
                    "annotations": {
                        KWOK_NODE_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "type": "kwok",
                    },
                },
                "spec": {},
                "status": {"allocatable": capacity, "capacity": capacity},
            }
            with contextlib.suppress(ApiException):
                core.create_node(body)
        self._extra_nodes += count

        def all_ready() -> bool:
            nodes = core.list_node().items
            ready = [
                n
                for n in nodes
                if not n.spec.taints
                and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            return len(ready) >= self._extra_nodes + 1

        wait_until(all_ready, 120, f"{count} extra kwok nodes to be Ready")

    def deploy_app(
        self, namespace: str, name: str, *, replicas: int = 1, service: bool = True
    ) -> None:
        """The tutorial's podinfo as ``name`` (Deployment, Service, Ingress on its own host)."""
        apps, core, net = (
            k8s.AppsV1Api(self.client),
            k8s.CoreV1Api(self.client),
            k8s.NetworkingV1Api(self.client),
        )
        for manifest in podinfo_manifests(
            namespace, name=name, replicas=replicas, host=f"{name}.{namespace}.example.com"
        ):
            kind = manifest["kind"]
            try:
                if kind == "Deployment":
                    apps.create_namespaced_deployment(namespace, manifest)
                elif kind == "Service" and service:
                    core.create_namespaced_service(namespace, manifest)
                elif kind == "Ingress":
                    net.create_namespaced_ingress(namespace, manifest)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def ready_deployments(self, namespaces: list[str], names: set[str]) -> int:
        """How many of the Deployments ``names`` (in any of ``namespaces``) are rolled out."""
        apps = k8s.AppsV1Api(self.client)
        ready = 0
        for namespace in namespaces:
            for d in apps.list_namespaced_deployment(namespace).items:
                if d.metadata.name not in names:
                    continue
                status = d.status
                if (
                    (status.observed_generation or 0) >= d.metadata.generation
                    and (status.updated_replicas or 0) == d.spec.replicas
                    and (status.available_replicas or 0) == d.spec.replicas
                    and (status.replicas or 0) == d.spec.replicas
                ):
                    ready += 1
        return ready

    # identities and counters

    def identity(self, user: str) -> Identity:
        """A new user bound to cluster-admin, with a FlowSchema of its own (see module doc)."""
        pki = self.cp.workdir / "pki"
        ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, user),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "canary-bot-bench"),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "bench",
                    "cluster": {
                        "server": self.cp.server,
                        "certificate-authority-data": b64((pki / "ca.crt").read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(
                            cert.public_bytes(serialization.Encoding.PEM)
                        ),
                        "client-key-data": b64(
                            key.private_bytes(
                                serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption(),
                            )
                        ),
                    },
                }
            ],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": user}}],
            "current-context": "bench",
        }
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)

        rbac = k8s.RbacAuthorizationV1Api(self.client)
        with contextlib.suppress(ApiException):
            rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": f"bench-{user}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                    ],
                }
            )
        # Exempt priority level: counted like any other, never queued or throttled, so
        # the measurement does not change what it measures.
        flow_schema = {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": user},
            "spec": {
                "matchingPrecedence": 300,
                "priorityLevelConfiguration": {"name": "exempt"},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [{"kind": "User", "user": {"name": user}}],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        }
        custom = k8s.CustomObjectsApi(self.client)
        with contextlib.suppress(ApiException):
            custom.create_cluster_custom_object(
                "flowcontrol.apiserver.k8s.io", "v1", "flowschemas", flow_schema
            )
        identity = Identity(user=user, kubeconfig=path, flow_schema=user)
        self._wait_counted(identity)
        return identity

    def _wait_counted(self, identity: Identity) -> None:
        """Make requests as ``identity`` until the API server counts them under its schema."""
        api = k8s_config.new_client_from_config(config_file=str(identity.kubeconfig))
        try:
            core = k8s.CoreV1Api(api)

            def counted() -> bool:
                core.list_namespace(limit=1)
                return self.requests_of(identity) > 0

            wait_until(counted, 30, f"the API server to count {identity.user}'s requests", 0.5)
        finally:
            api.close()

    def _context(self) -> ssl.SSLContext:
        """TLS with the admin client certificate from the kubeconfig."""
        if self._ssl is None:
            config = yaml.safe_load(self.kubeconfig.read_text())
            user = config["users"][0]["user"]
            cluster = config["clusters"][0]["cluster"]
            context = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                context.load_cert_chain(str(cert), str(key))
            self._ssl = context
        return self._ssl

    def metrics_text(self) -> str:
        """The API server's /metrics."""
        with urllib.request.urlopen(
            f"{self.cp.server}/metrics", context=self._context(), timeout=30
        ) as response:
            return str(response.read().decode())

    def counters(self) -> ApiCounters:
        """A reading of the API server's request counters."""
        samples = parse_samples(
            self.metrics_text(),
            {"apiserver_request_total", "apiserver_flowcontrol_dispatched_requests_total"},
        )
        return ApiCounters(time.monotonic(), samples)

    def requests_of(self, identity: Identity) -> float:
        """Requests the API server has dispatched for ``identity`` so far."""
        return self.counters().of_schema(identity.flow_schema)

    def component_pids(self) -> dict[str, int]:
        """Process ids of the control plane's components."""
        return self.cp.pids


@dataclass
class ApiCounters:
    """One reading of the API server's request counters."""

    at: float
    samples: list[tuple[str, dict[str, str], float]]

    def of_schema(self, flow_schema: str) -> float:
        """Requests dispatched for one FlowSchema (i.e. one benchmark client)."""
        return total(
            [s for s in self.samples if s[0] == "apiserver_flowcontrol_dispatched_requests_total"],
            flow_schema=flow_schema,
        )

    def all_requests(self, **labels: str) -> float:
        """``apiserver_request_total`` summed over every client, optionally filtered."""
        return total([s for s in self.samples if s[0] == "apiserver_request_total"], **labels)

    def by_resource(self) -> dict[str, float]:
        """``apiserver_request_total`` per ``verb resource`` (every client)."""
        out: dict[str, float] = {}
        for name, labels, value in self.samples:
            if name != "apiserver_request_total":
                continue
            key = f"{labels.get('verb', '')} {labels.get('resource', '') or '-'}"
            out[key] = out.get(key, 0.0) + value
        return out


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-key increase between two readings (keys that did not move are left out)."""
    out = {}
    for key, value in after.items():
        change = value - before.get(key, 0.0)
        if change:
            out[key] = change
    return out


# -- Prometheus -------------------------------------------------------------------------------


class Prometheus:
    """A real Prometheus for one benchmark, plus its own query counters."""

    def __init__(
        self, workdir: Path, log: Log, *, scrape_interval: str = "1s", slots: int = 1
    ) -> None:
        self.log = log
        self.server = PrometheusServer(
            workdir / "prometheus",
            scrape_interval=scrape_interval,
            evaluation_interval=scrape_interval,
            prewarm_slots=slots,
            slot_labels={"job": TRAFFIC_JOB},
        )

    def start(self) -> Prometheus:
        """Start the server (pre-warmed scrape slots are discovered in the background)."""
        self.server.start()
        self.log(f"Prometheus ready at {self.server.url}")
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()

    @property
    def url(self) -> str:
        """Base URL."""
        return self.server.url

    @property
    def pid(self) -> int | None:
        """Process id."""
        return self.server.pid

    def query_counts(self) -> tuple[float, float]:
        """(HTTP requests to /api/v1/query, PromQL evaluations) Prometheus has served so far.

        Read from Prometheus's own /metrics (no query involved, so reading it does not
        change what it counts). Evaluations are ``prometheus_engine_query_duration_seconds
        _count{slice="inner_eval"}``, which also counts rule evaluations (none configured).
        """
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = parse_samples(
            text,
            {"prometheus_http_requests_total", "prometheus_engine_query_duration_seconds_count"},
        )
        http = total(
            [s for s in samples if s[0] == "prometheus_http_requests_total"],
            handler="/api/v1/query",
        )
        evals = total(
            [s for s in samples if s[0] == "prometheus_engine_query_duration_seconds_count"],
            slice="inner_eval",
        )
        return http, evals


@contextlib.contextmanager
def scratch(options_workdir: Path | None, name: str) -> Iterator[Path]:
    """A work directory for one benchmark (kept when given, temporary otherwise)."""
    if options_workdir is not None:
        path = options_workdir / name
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"canary-bot-bench-{name}-") as tmp:
        yield Path(tmp)


def _served_version(body: dict[str, Any]) -> tuple[str, str, str] | None:
    """(group, a served version, plural) of a CRD body; None for anything else."""
    if body.get("kind") != "CustomResourceDefinition":
        return None
    spec = body["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    return spec["group"], version, spec["names"]["plural"]
