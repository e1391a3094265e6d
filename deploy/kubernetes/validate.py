#!/usr/bin/env python3
"""Validates the Kubernetes files of a directory (deploy/kubernetes/); validate.sh runs it with the
pinned validators in a virtual environment.

- every object of kustomization.yaml's `resources`, in strict mode (an unknown field is an error):
  the built-in kinds against the Kubernetes API schemas of kubernetes-validate, the PodMonitor
  against the prometheus-operator CRD schema of cloudcoil-models-prometheus-operator; a kind with
  no schema is an error, not a warning;
- kustomization.yaml itself, structurally: its keys, and `resources` naming every object file;
- that the files agree: the ConfigMap holds drover.yaml verbatim, the manifest is mounted as a
  whole directory (no subPath), terminationGracePeriodSeconds is above shutdown_timeout, and the
  metrics port, probes, annotations, Service and PodMonitor name the same ports and labels.

Usage: validate.py [-k VERSION]... DIR. Exit 0 when all is valid, 1 when anything is not.
"""

import argparse
import pathlib
import re
import sys
from importlib.metadata import version as installed

import jsonschema
import jsonschema.exceptions
import kubernetes_validate
import kubernetes_validate.utils
import yaml
from cloudcoil.models.prometheus_operator.v1 import PodMonitor

MANIFEST = "drover.yaml"
KUSTOMIZATION = "kustomization.yaml"
# After the drain's deadline drover still ends processes that outlived their services (at most
# 2 s), flushes its log (at most 1 s) and its spans (at most 2 s), and shuts its runtime down
# (1 s allowed).
EXIT_MARGIN_SECONDS = 6


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys, as `kubectl apply` does (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def strict(schema):
    """Rejects unknown fields in every object of the schema that lists its fields, as the API
    server does for a CRD with `kubectl apply` (field validation Strict)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def leaf_errors(e):
    """The errors under an anyOf of pydantic's "this or null": those of the non-null branch."""
    if e.validator == "anyOf" and e.context:
        branches = [i for i, b in enumerate(e.validator_value) if b != {"type": "null"}]
        if len(branches) == 1:
            return [f for c in e.context if c.relative_schema_path[0] == branches[0] for f in leaf_errors(c)]
        return [jsonschema.exceptions.best_match([e])]
    return [e]


def seconds(duration):
    """A drover duration (`20s`, `1m30s`, a bare number of seconds) in seconds."""
    if isinstance(duration, int) and not isinstance(duration, bool):
        return duration
    text = str(duration).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    part = r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*"
    if not re.fullmatch(f"(?:{part})+", text):
        raise ValueError(f"cannot read the duration {duration!r} here; write it as 20s or 1m30s")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(part, text))


def cross_check(manifest, manifest_text, objects, error):
    """That the files agree with one another; returns a summary, or None after an error."""
    deployment, configmap = objects["Deployment"], objects["ConfigMap"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"].get("labels") or {}
    container = spec["containers"][0]
    cargs = container.get("args") or []
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    here = "deployment.yaml"
    ok = True

    def fail(where, message):
        nonlocal ok
        ok = False
        error(where, message)

    # The ConfigMap holds drover.yaml, and drover runs it from a whole-directory mount.
    if (configmap.get("data") or {}).get(MANIFEST) != manifest_text:
        fail("configmap.yaml",
             f"data.{MANIFEST} differs from {MANIFEST}: copy {MANIFEST} into it, indented 4 spaces")
    name = configmap["metadata"]["name"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = [
        m for m in container.get("volumeMounts") or []
        if ((volumes.get(m["name"]) or {}).get("configMap") or {}).get("name") == name
    ]
    if len(mounts) != 1:
        fail(here, f"expected one mount of the ConfigMap {name}")
    for m in mounts:
        if "subPath" in m or "subPathExpr" in m:
            fail(here, f"volumeMounts {m['name']}: subPath: a subPath mount never updates, so hot "
                 "reload never sees an edit; mount the whole directory")
        path = f"{m['mountPath'].rstrip('/')}/{MANIFEST}"
        if path not in cargs:
            fail(here, f"args: expected drover to run {path}, got {cargs}")

    # The grace period outlasts drover's drain.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    try:
        timeout = seconds((manifest.get("settings") or {}).get("shutdown_timeout", "30s"))
    except ValueError as e:
        fail(MANIFEST, f"settings.shutdown_timeout: {e}")
        timeout = None
    if timeout is not None and grace < timeout + EXIT_MARGIN_SECONDS:
        fail(here, f"terminationGracePeriodSeconds {grace} must be at least settings.shutdown_timeout "
             f"({timeout:g} s in {MANIFEST}) + {EXIT_MARGIN_SECONDS} s, or the kubelet's SIGKILL "
             "cuts drover's drain short")

    # One metrics port, named the same everywhere.
    flag = "--metrics-listen"
    listen = cargs[cargs.index(flag) + 1] if flag in cargs[:-1] else None
    metrics = ports.get("metrics")
    if listen is None or metrics is None or not listen.endswith(f":{metrics}"):
        fail(here, f"args {flag} ({listen}) and the container port named metrics ({metrics}) disagree")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("metrics", metrics):
            fail(here, f"{probe}: expected httpGet {path} on the metrics port")
    annotations = pod["metadata"].get("annotations") or {}
    for key, value in (("scrape", "true"), ("port", str(metrics)), ("path", "/metrics")):
        got = annotations.get(f"prometheus.io/{key}")
        if got != value:
            fail(here, f"pod annotation prometheus.io/{key}: expected {value!r}, got {got!r}")

    # The Service and the PodMonitor select these pods and name their ports.
    service = objects.get("Service")
    if service is not None:
        if not (service["spec"].get("selector") or {}).items() <= labels.items():
            fail("service.yaml", "spec.selector does not select the Deployment's pods")
        for p in service["spec"].get("ports") or []:
            if p.get("targetPort") not in (*ports, *ports.values()):
                fail("service.yaml",
                     f"port {p.get('name')}: targetPort {p.get('targetPort')!r} is no port of the pod")
    monitor = objects.get("PodMonitor")
    if monitor is not None:
        if not (monitor["spec"]["selector"].get("matchLabels") or {}).items() <= labels.items():
            fail("podmonitor.yaml", "spec.selector does not select the Deployment's pods")
        for e in monitor["spec"].get("podMetricsEndpoints") or []:
            if e.get("port") != "metrics" or e.get("path", "/metrics") != "/metrics":
                fail("podmonitor.yaml", "podMetricsEndpoints: expected port metrics, path /metrics")
    if not ok:
        return None
    return (f"configmap.yaml holds {MANIFEST}, mounted whole at {mounts[0]['mountPath']}; "
            f"terminationGracePeriodSeconds {grace} >= shutdown_timeout {timeout:g} s "
            f"+ {EXIT_MARGIN_SECONDS} s; "
            f"metrics port {metrics} everywhere")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument("dir", type=pathlib.Path)
    args = parser.parse_args()
    versions = args.versions or [kubernetes_validate.latest_version()]
    root = args.dir
    errors = []

    def error(where, message):
        errors.append(f"{where}: {message}")

    def load(name):
        try:
            return [d for d in yaml.load_all((root / name).read_text(), UniqueKeyLoader) if d]
        except (OSError, yaml.YAMLError) as e:
            error(name, f"cannot read: {e}")
            return []

    # The models' version is the operator's, plus a build number: 0.80.1.0 is v0.80.1.
    operator = installed("cloudcoil-models-prometheus-operator")
    operator_version = operator.rsplit(".", 1)[0]
    print(
        f"validating {root}/ with kubernetes-validate {installed('kubernetes-validate')} "
        f"against Kubernetes {', '.join(versions)} (strict), and the PodMonitor against the "
        f"prometheus-operator v{operator_version} CRD schema "
        f"(cloudcoil-models-prometheus-operator {operator}, strict)"
    )
    podmonitor_schema = strict(PodMonitor.model_json_schema(by_alias=True, mode="validation"))
    jsonschema.Draft202012Validator.check_schema(podmonitor_schema)
    podmonitor_validator = jsonschema.Draft202012Validator(podmonitor_schema)

    # kustomization.yaml: its structure only; kubectl's kustomize reads it, and only these keys.
    kustomization = load(KUSTOMIZATION)
    resources = []
    before = len(errors)
    if len(kustomization) != 1 or not isinstance(kustomization[0], dict):
        error(KUSTOMIZATION, "expected one mapping")
    else:
        k = kustomization[0]
        if (k.get("apiVersion"), k.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
            error(KUSTOMIZATION, "expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
        for key in sorted(set(k) - {"apiVersion", "kind", "resources"}):
            error(KUSTOMIZATION, f"unexpected key {key!r} (only apiVersion, kind and resources are checked)")
        resources = k.get("resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            error(KUSTOMIZATION, "resources: expected a list of file names")
            resources = []
        here = sorted(
            p.name for p in root.iterdir()
            if p.suffix in (".yaml", ".yml") and p.name not in (KUSTOMIZATION, MANIFEST)
        )
        if sorted(resources) != here:
            error(KUSTOMIZATION, f"resources: {sorted(resources)} should be exactly the object files {here}")
    if len(errors) == before:
        print(f"ok    {KUSTOMIZATION}: structure; resources list every object file")

    # Every object, against its schema.
    objects = {}
    for name in resources:
        for doc in load(name):
            if not isinstance(doc, dict) or not {"apiVersion", "kind"} <= set(doc):
                error(name, "a document without apiVersion and kind")
                continue
            kn = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
            objects[doc["kind"]] = doc
            if (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor"):
                found = [f for e in podmonitor_validator.iter_errors(doc) for f in leaf_errors(e)]
                found.sort(key=lambda e: [str(p) for p in e.absolute_path])
                for e in found:
                    path = ".".join(str(p) for p in e.absolute_path)
                    error(f"{name}: {kn}", f"{path}: {e.message}")
                if not found:
                    print(f"ok    {name}: {kn} (prometheus-operator v{operator_version}, strict)")
                continue
            passed = True
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    error(f"{name}: {kn}", f"Kubernetes {e.version}: {path}: {e.message}")
                    passed = False
                except kubernetes_validate.SchemaNotFoundError as e:
                    error(f"{name}: {kn}", f"no schema: {e.message}")
                    passed = False
                except kubernetes_validate.utils.VersionNotSupportedError as e:
                    error(f"{name}: {kn}", f"kubernetes-validate has no schema for Kubernetes {e.version}")
                    passed = False
            if passed:
                print(f"ok    {name}: {kn} (Kubernetes {', '.join(versions)}, strict)")

    # The files agree with one another.
    manifest_text = (root / MANIFEST).read_text()
    manifest = yaml.load(manifest_text, UniqueKeyLoader) or {}
    if not {"Deployment", "ConfigMap"} <= set(objects):
        error("resources", "expected a Deployment and a ConfigMap")
    else:
        try:
            summary = cross_check(manifest, manifest_text, objects, error)
            if summary:
                print(f"ok    the files agree: {summary}")
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            error("the files", f"cannot compare them, a field is missing or malformed: {e!r}")

    for e in errors:
        print(f"ERROR {e}")
    if errors:
        print(f"validate: {len(errors)} error(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
