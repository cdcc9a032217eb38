"""A real etcd and kube-apiserver as plain processes on 127.0.0.1, the way controller-runtime's envtest runs them.

Binaries: ``$KUBEBUILDER_ASSETS`` (what ``setup-envtest use`` prints), else the project's cache folder that
``tests/envtest/install.sh`` fills (it builds kube-apiserver v1.20.2 from Debian's source package). The
server runs RBAC authorization, static-token authentication (one admin token in ``system:masters``) and
service-account tokens (the TokenRequest API), and gets the CRDs vendored in ``tests/contracts/``.

What it cannot play (no controller-manager, no KServe controller): namespaces never finish deleting,
nothing garbage-collects, no default ServiceAccount appears, and no InferenceService becomes Ready by
itself; ``tests/envtest/kserve_controller.py`` writes the status a controller would. v1.20 ignores CEL
rules (``x-kubernetes-validations``); champion's strict schema check covers what the server does not.
"""

from __future__ import annotations

import base64
import gzip
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import free_port

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
VERSION = "v1.20.2"
INSTALL_SCRIPT = Path(__file__).resolve().parent / "install.sh"


def cache_dir() -> Path:
    """Where install.sh puts what it builds (the same default as the script)."""
    if os.environ.get("CHAMPION_ENVTEST_DIR"):
        return Path(os.environ["CHAMPION_ENVTEST_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "champion" / "envtest" / VERSION


def find_assets() -> Path | None:
    """The folder holding kube-apiserver and etcd, envtest's convention first."""
    for folder in (os.environ.get("KUBEBUILDER_ASSETS"), str(cache_dir())):
        if folder and all(os.access(Path(folder) / binary, os.X_OK) for binary in ("kube-apiserver", "etcd")):
            return Path(folder)
    return None


def missing_reason() -> str:
    return (
        f"no kube-apiserver and etcd in $KUBEBUILDER_ASSETS or {cache_dir()}: run "
        f"`{INSTALL_SCRIPT.relative_to(INSTALL_SCRIPT.parents[2])}` "
        "as root on Debian/Ubuntu (builds v1.20.2 from Debian's source package), or point KUBEBUILDER_ASSETS at "
        "`setup-envtest use 1.20.x -p path`"
    )


def _without_empty_string_defaults(schema):
    """v1.20 reads a schema's ``default: ""`` as null and refuses the whole CRD ("must be of type string:
    null"); newer servers take it. The only such defaults in the vendored CRDs are Kubernetes' own
    ``LocalObjectReference.name`` (a reference's name defaulting to ""), which champion never relies on, so
    they are dropped; where such a name is the key of a list-map (which needs a default or ``required``),
    it becomes required instead."""
    if isinstance(schema, list):
        return [_without_empty_string_defaults(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    items = schema.get("items")
    if isinstance(items, dict):
        for key in schema.get("x-kubernetes-list-map-keys") or []:
            if (items.get("properties") or {}).get(key, {}).get("default") == "":
                items["required"] = sorted({*items.get("required", []), key})
    return {
        key: _without_empty_string_defaults(value)
        for key, value in schema.items()
        if not (key == "default" and value == "")
    }


def vendored_crds(*folders: str) -> list[dict]:
    """The CRDs under ``tests/contracts/<folder>`` (gzipped YAML, copied unchanged from the contract files),
    with the one change v1.20 needs to accept them (``_without_empty_string_defaults``)."""
    crds = []
    for folder in folders:
        for path in sorted((CONTRACTS / folder).glob("*.yaml.gz")):
            text = gzip.decompress(path.read_bytes()).decode()
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            crds.extend(
                _without_empty_string_defaults(doc)
                for doc in yaml.load_all(text, Loader=loader)
                if doc and doc.get("kind") == "CustomResourceDefinition"
            )
    return crds


ALL_CRDS = ("kserve-crds", "kserve-crds/llmisvc", "cluster-crds", "cluster-crds/trainer")


@dataclass
class StartupTimes:
    etcd_s: float = 0.0
    apiserver_s: float = 0.0
    crds_s: float = 0.0
    crd_count: int = 0

    def line(self) -> str:
        return (
            f"envtest {VERSION}: etcd ready in {self.etcd_s:.1f} s, kube-apiserver ready in {self.apiserver_s:.1f} s, "
            f"{self.crd_count} CRDs established in {self.crds_s:.1f} s"
        )


@dataclass
class EnvTest:
    """``with EnvTest(assets) as server:`` a fresh etcd + kube-apiserver; ``server.admin`` is an ApiClient
    with cluster-admin rights, ``server.kubeconfig(path, token)`` writes a kubeconfig for any token."""

    assets: Path
    crd_folders: tuple[str, ...] = ALL_CRDS
    times: StartupTimes = field(default_factory=StartupTimes)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="envtest-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.admin_token = secrets.token_hex(16)
        self.processes: list[subprocess.Popen] = []
        self.port = 0

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def _wait(self, name: str, process: subprocess.Popen, ready, timeout_s: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if process.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode} while starting:\n{tail}")
            if ready():
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"{name} was not ready after {timeout_s:.0f} s; see {self.workdir / (name + '.log')}")

    def __enter__(self) -> EnvTest:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        import urllib.request

        client_port, peer_port, self.port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.assets / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            ],
        )

        def etcd_healthy() -> bool:
            try:
                return b'"health":"true"' in urllib.request.urlopen(f"{etcd_url}/health", timeout=1).read()
            except OSError:
                return False

        self.times.etcd_s = self._wait("etcd", etcd, etcd_healthy)

        service_account_key = self.workdir / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(service_account_key), "2048"], check=True, capture_output=True)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},envtest-admin,envtest-admin,"system:masters"\n')
        cert_dir = self.workdir / "certs"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={cert_dir}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={service_account_key}",
                f"--service-account-signing-key-file={service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--allow-privileged=true",
            ],
        )
        self.ca_file = cert_dir / "apiserver.crt"

        def apiserver_ready() -> bool:
            import ssl

            if not self.ca_file.exists():
                return False
            request = urllib.request.Request(
                f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
            )
            try:
                context = ssl.create_default_context(cafile=str(self.ca_file))
                return urllib.request.urlopen(request, timeout=1, context=context).read() == b"ok"
            except (OSError, ssl.SSLError):
                return False

        self.times.apiserver_s = self._wait("kube-apiserver", apiserver, apiserver_ready)
        self.admin = self.client(self.admin_token)
        started = time.monotonic()
        crds = vendored_crds(*self.crd_folders)
        self.install_crds(crds)
        self.times.crds_s, self.times.crd_count = time.monotonic() - started, len(crds)

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- clients ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, token: str, namespace: str = "default", server: str = "") -> str:
        """A kubeconfig that trusts this server's self-signed certificate and presents ``token``."""
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "envtest",
            "clusters": [
                {"name": "envtest", "cluster": {"server": server or self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [
                {"name": "envtest", "context": {"cluster": "envtest", "user": "user", "namespace": namespace}}
            ],
        }
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def client(self, token: str):
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)

    # -- setup helpers ------------------------------------------------------------------------

    def install_crds(self, crds: list[dict], timeout_s: float = 60.0) -> None:
        from kubernetes import client

        api = client.ApiextensionsV1Api(self.admin)
        for crd in crds:
            api.create_custom_resource_definition(crd)
        deadline = time.monotonic() + timeout_s
        pending = {crd["metadata"]["name"] for crd in crds}
        while pending:
            for name in sorted(pending):
                status = api.read_custom_resource_definition(name).status
                if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"CRDs not Established after {timeout_s:.0f} s: {sorted(pending)}")
            time.sleep(0.05)

    def create_namespace(self, name: str) -> str:
        from kubernetes import client

        client.CoreV1Api(self.admin).create_namespace({"metadata": {"name": name}})
        return name

    def service_account_token(self, namespace: str, name: str, *, create: bool = True) -> str:
        """A bound token from the TokenRequest API for ``namespace/name`` (created first; no controller does it)."""
        from kubernetes import client

        core = client.CoreV1Api(self.admin)
        if create:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        request = core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}}
        )
        return request.status.token

    def apply(self, objects: list[dict], *, dry_run: bool = False, field_manager: str = "champion-tests") -> list[dict]:
        """Server-side apply of each object as the admin (what ``kubectl apply --server-side`` sends)."""
        from kubernetes.dynamic import DynamicClient

        dynamic = DynamicClient(self.admin)
        applied = []
        for obj in objects:
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            result = dynamic.server_side_apply(
                resource,
                body=obj,
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
                field_manager=field_manager,
                dry_run="All" if dry_run else None,
            )
            applied.append(result.to_dict())
        return applied
