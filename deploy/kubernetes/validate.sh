#!/usr/bin/env bash
# Validates deploy/kubernetes/ (run from anywhere; CI runs it from the repository root):
# - `drover check` of drover.yaml (needs `cargo build -p drover`, or DROVER_BIN);
# - validate.py, strict (an unknown field is an error): the built-in kinds against the
#   Kubernetes API schemas that the PyPI package kubernetes-validate ships, per Kubernetes
#   version; the PodMonitor against the prometheus-operator CRD schema that
#   cloudcoil-models-prometheus-operator (PyPI) is generated from; kustomization.yaml's
#   structure; and that the files agree (ConfigMap = drover.yaml, no subPath, grace period
#   above shutdown_timeout, one metrics port);
# - then deliberately broken copies, each of which must fail, so that a pass means something.
# The validators are pinned and installed into a virtual environment under target/tools/, as
# scripts/setup.sh does for oteltap.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=deploy/kubernetes
drover="${DROVER_BIN:-target/debug/drover}"
# 1.37: the newest schemas kubernetes-validate 1.37.0 ships; 1.30: an older cluster, so that the
# files use no field newer than it.
versions=(1.30 1.37)
pins=(
  kubernetes-validate==1.37.0
  cloudcoil-models-prometheus-operator==0.80.1.0
  cloudcoil==0.6.0
  pydantic==2.14.4
  jsonschema==4.26.0
  referencing==0.37.0
  PyYAML==6.0.4
)
tools="$PWD/target/tools/kubernetes"
if [ ! -x "$tools/bin/python" ] || [ "$(cat "$tools/pins" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "== installing ${pins[*]} into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools" 2>/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    rm -rf "$tools"
    python3 -m venv "$tools"
  }
  "$tools/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$tools/pins"
fi
k=()
for v in "${versions[@]}"; do k+=(-k "$v"); done

echo "== drover check $dir/drover.yaml"
[ -x "$drover" ] || { echo "validate: no drover binary at $drover (cargo build -p drover, or set DROVER_BIN)" >&2; exit 1; }
"$drover" check "$dir/drover.yaml"
echo "ok    drover.yaml"

echo "== $dir: schemas and consistency"
"$tools/bin/python" "$dir/validate.py" "${k[@]}" "$dir"

echo "== broken copies must fail"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rejected=0
# broken WHAT FILE SED-SCRIPT EXPECTED: a copy of $dir with FILE edited by SED-SCRIPT must fail
# validate.py with an error line containing EXPECTED.
broken() {
  rm -rf "$work/copy"
  cp -r "$dir" "$work/copy"
  sed -i "$3" "$work/copy/$2"
  if cmp -s "$dir/$2" "$work/copy/$2"; then
    echo "validate: the edit for \"$1\" changed nothing in $2 (update this test)" >&2
    exit 1
  fi
  local out
  if out="$("$tools/bin/python" "$dir/validate.py" "${k[@]}" "$work/copy" 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "validate: $1 ($2) passed: the validation is broken" >&2
    exit 1
  fi
  if ! printf '%s\n' "$out" | grep -F "ERROR" | grep -qF -- "$4"; then
    printf '%s\n' "$out" >&2
    echo "validate: $1 ($2) failed, but without an error containing: $4" >&2
    exit 1
  fi
  echo "rejected ($1): $(printf '%s\n' "$out" | grep -F "ERROR" | grep -F -- "$4" | head -n1)"
  rejected=$((rejected + 1))
}
broken "replicas as a string" deployment.yaml \
  's/^  replicas: 1$/  replicas: "two"/' "spec.replicas: 'two' is not of type 'integer'"
broken "an unknown field under spec.template.spec" deployment.yaml \
  '/^      terminationGracePeriodSeconds:/a\      hostNetwrk: true' "'hostNetwrk' was unexpected"
broken "a duplicate key" deployment.yaml \
  '/^  replicas: 1$/a\  replicas: 2' "duplicate key 'replicas'"
broken "a misspelt kind" service.yaml \
  's/^kind: Service$/kind: Servce/' "no schema"
broken "an unknown PodMonitor field" podmonitor.yaml \
  's/^      path: \/metrics$/      pathh: \/metrics/' "'pathh' was unexpected"
broken "a PodMonitor interval without a unit" podmonitor.yaml \
  's/^      interval: 30s$/      interval: "30"/' "podMetricsEndpoints.0.interval"
broken "a ConfigMap that drifted from drover.yaml" configmap.yaml \
  's/^      shutdown_timeout: 20s$/      shutdown_timeout: 25s/' "differs from drover.yaml"
broken "a grace period not above shutdown_timeout" deployment.yaml \
  's/^      terminationGracePeriodSeconds: 30$/      terminationGracePeriodSeconds: 20/' "terminationGracePeriodSeconds 20 must be"
broken "the manifest mounted with subPath" deployment.yaml \
  '/^              mountPath: \/etc\/drover$/a\              subPath: drover.yaml' "subPath"
echo "validate: $dir valid against Kubernetes ${versions[*]} and prometheus-operator v0.80.1; $rejected broken copies rejected"
