#!/usr/bin/env bash
# The operator, its chart and its CRD against a real control plane (scripts/cluster: etcd,
# kube-apiserver with RBAC, kube-controller-manager, kube-scheduler, kwok), on private
# ports and a private state dir, torn down at the end:
#   - the sample ThroughputService (pointed at the private NATS) turns Ready, with every
#     owned object carrying a controller owner reference, HPA and ScaledObject as asked,
#     conditions, events, and `kubectl get tps` showing the READY column;
#   - the api HPA (kube-controller-manager) raises the api to minReplicas; Ready follows;
#   - edits: api.maxReplicas reaches the HPA, worker.shards is refused as immutable, a
#     switch keda -> hpa replaces the ScaledObject with a worker HPA;
#   - CEL refuses bad specs (min > max, max > shards, keda without a monitoring endpoint);
#   - the operator's ServiceAccount cannot read Secrets (the chart's RBAC is what it runs with);
#   - deletion with Retain and with Delete: events, finalizer gone, children garbage-collected.
# The control plane is built once per machine (scripts/k8s-tools, cached in /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
fail() {
  printf '\033[1;31mFAIL:\033[0m %s\n' "$*" >&2
  if [ -n "${STATE:-}" ] && [ -f "$STATE/logs/tps-operator.log" ]; then
    echo "--- last operator log lines:" >&2; tail -30 "$STATE/logs/tps-operator.log" >&2
  fi
  exit 1
}
pass() { printf '  ok: %s\n' "$*" >&2; }

# Private ports and state: a developer's `scripts/cluster up` and `scripts/dev up` keep running.
export TPS_CLUSTER_DIR STATE TPS_DEV_DIR
STATE=$(mktemp -d /var/tmp/tps-control-plane.XXXXXX)
chmod 755 "$STATE" # Postgres runs as its own user and must reach its data dir
TPS_CLUSTER_DIR=$STATE TPS_DEV_DIR=$STATE/dev
export TPS_ETCD_PORT=22379 TPS_APISERVER_PORT=26443 TPS_KCM_PORT=20357 TPS_SCHEDULER_PORT=20359 \
  TPS_KWOK_PORT=20347 TPS_OPERATOR_PORT=28080 TPS_NATS_PORT=24222 TPS_NATS_MONITOR_PORT=28222 TPS_PG_PORT=25432 TPS_REDIS_PORT=26379
# scripts/test has just built the workspace; its tps-operator is current. (A build of the
# operator alone would unify other features and recompile much of the dependency tree.)
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tps-target}"
if [ -x "$CARGO_TARGET_DIR/debug/tps-operator" ]; then export TPS_OPERATOR_BUILD=0; fi
cleanup() {
  scripts/cluster down >/dev/null 2>&1 || true
  if [ "${KEEP_STATE:-0}" = 1 ]; then log "state kept in $STATE"; else rm -rf "$STATE"; fi
}
trap cleanup EXIT

log "starting the control plane (state $STATE)"
scripts/cluster up >"$STATE.up.log" 2>&1 || { cat "$STATE.up.log" >&2; rm -f "$STATE.up.log"; fail "scripts/cluster up"; }
rm -f "$STATE.up.log"
export PATH="${TPS_K8S_BIN:-$(scripts/k8s-tools bin)}:$PATH"
set -a; source <(scripts/cluster env); set +a
k() { kubectl "$@"; }
ns=shop

# ---------------------------------------------------------------- helpers

# Waits up to $1 seconds for the command to succeed.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 1
  done
}
jpath() { k -n $ns get "$1" -o "jsonpath={$2}"; }
condition() { jpath "tps/$1" ".status.conditions[?(@.type==\"$2\")].status"; }
condition_is() { [ "$(condition "$1" "$2")" = "$3" ]; }
gone() { ! k -n $ns get "$1" >/dev/null 2>&1; }
events_for() { k -n $ns get events --field-selector "involvedObject.name=$1" -o jsonpath='{.items[*].reason}'; }
has_event() { events_for "$1" | tr ' ' '\n' | grep -qx "$2"; }
refused() { # description expected-message manifest
  local out
  if out=$(k apply --dry-run=server -f - <<<"$3" 2>&1); then fail "CEL accepted: $1"; fi
  grep -q "$2" <<<"$out" || fail "$1: refused, but not with '$2': $out"
  pass "refused: $1"
}

# The sample, pointed at the private NATS with one stream replica (one NATS server here).
sample() {
  sed -E -e "s#url: nats://nats\.shop\.svc:4222#url: $NATS_URL#" -e 's#^(\s+)replicas: 3$#\1replicas: 1#' \
    config/samples/throughputservice.yaml
}

# A stand-in for KEDA's CRD, so the ScaledObject path (and its RBAC) is exercised without KEDA.
keda_crd() {
  k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scaledobjects.keda.sh}
spec:
  group: keda.sh
  names: {kind: ScaledObject, plural: scaledobjects, singular: scaledobject}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
  k wait --for=condition=Established crd/scaledobjects.keda.sh --timeout=30s >/dev/null
}

# ---------------------------------------------------------------- the sample turns Ready

keda_crd
sample | grep -q "url: $NATS_URL" || fail "the sample's nats.url was not rewritten"
sample | k apply -f - >/dev/null
# Ready needs both fleets at their minimum. KEDA is not installed, so the worker stays at the
# Deployment's default 1 of the sample's minimum 2: not Ready. Then play KEDA's part.
reason_is() { [ "$(jpath "tps/$1" ".status.conditions[?(@.type==\"$2\")].reason")" = "$3" ]; }
eventually 120 reason_is flash-sale WorkerAvailable BelowMinimum ||
  fail "1 of 2 workers is not BelowMinimum: $(jpath tps/flash-sale .status.conditions)"
condition_is flash-sale Ready False || fail "Ready with the worker below its minimum"
pass "a fleet below its minimum is not Ready (WorkerAvailable BelowMinimum)"
k -n $ns scale deployment/flash-sale-worker --replicas=2 >/dev/null
eventually 120 condition_is flash-sale Ready True || fail "flash-sale not Ready: $(jpath tps/flash-sale .status)"
pass "sample Ready"
for c in ApiAvailable WorkerAvailable StreamsReady; do
  condition_is flash-sale $c True || fail "$c is not True: $(jpath tps/flash-sale .status.conditions)"
done
condition_is flash-sale Degraded False || eventually 60 condition_is flash-sale Degraded False ||
  fail "Degraded is not False: $(jpath tps/flash-sale .status.conditions)"
pass "conditions ApiAvailable, WorkerAvailable, StreamsReady True; Degraded False"
[ "$(jpath tps/flash-sale .status.observedGeneration)" = "$(jpath tps/flash-sale .metadata.generation)" ] ||
  fail "observedGeneration lags generation"
[ "$(jpath tps/flash-sale .status.shards)" = 16 ] || fail "status.shards is not 16"

table=$(k -n $ns get tps flash-sale)
head -1 <<<"$table" | grep -qE '^NAME +READY +API +WORKERS +SHARDS +AGE' || fail "kubectl get tps columns: $table"
tail -1 <<<"$table" | grep -qE '^flash-sale +True ' || fail "kubectl get tps READY: $table"
pass "kubectl get tps: $(tail -1 <<<"$table" | tr -s ' ')"

uid=$(jpath tps/flash-sale .metadata.uid)
for obj in deployment/flash-sale-api deployment/flash-sale-worker service/flash-sale-api service/flash-sale-worker \
  configmap/flash-sale-config serviceaccount/flash-sale hpa/flash-sale-api scaledobject.keda.sh/flash-sale-worker \
  pdb/flash-sale-api pdb/flash-sale-worker networkpolicy/flash-sale-api networkpolicy/flash-sale-worker \
  ingress/flash-sale-api; do
  owner=$(jpath "$obj" '.metadata.ownerReferences[?(@.controller==true)].uid') || fail "$obj missing"
  [ "$owner" = "$uid" ] || fail "$obj is not controlled by tps/flash-sale (owner uid '$owner')"
done
pass "13 owned objects, each with a controller owner reference to the ThroughputService"
gone hpa/flash-sale-worker || fail "a worker HPA exists next to the ScaledObject"
[ "$(jpath hpa/flash-sale-api .spec.minReplicas)/$(jpath hpa/flash-sale-api .spec.maxReplicas)" = 2/20 ] ||
  fail "api HPA bounds are not 2/20"
[ "$(jpath hpa/flash-sale-api .spec.scaleTargetRef.name)" = flash-sale-api ] || fail "api HPA target"
pass "api HPA 2..20 on flash-sale-api; no worker HPA next to KEDA"

# kube-controller-manager's HPA controller raises the api from the Deployment's default 1 to
# minReplicas 2 (below the minimum it needs no metrics); kwok makes the pods Ready.
api_at_min() { [ "$(jpath tps/flash-sale .status.api.readyReplicas)" = 2 ]; }
eventually 90 api_at_min || fail "the api never had 2 ready pods: $(jpath tps/flash-sale .status.api)"
pass "the HPA scaled the api to its minimum (2 ready pods) and the status shows it"

for reason in StreamsProvisioned Ready; do
  eventually 30 has_event flash-sale $reason || fail "no $reason event: $(events_for flash-sale)"
done
pass "events: $(events_for flash-sale)"

# ---------------------------------------------------------------- RBAC as the chart grants it

sa=system:serviceaccount:tps-system:tps-operator
[ "$(k auth can-i get secrets -n $ns --as=$sa)" = no ] || fail "the operator may read Secrets"
[ "$(k auth can-i patch deployments.apps -n $ns --as=$sa)" = yes ] || fail "the operator may not patch Deployments"
pass "the operator runs with the chart's RBAC (no Secrets)"

# ---------------------------------------------------------------- owned kinds are watched

# A child deleted by hand comes back at once (a watch on every owned kind), not at the
# 5-minute resync.
# One at a time: each restore must come from that kind's own watch (and its RBAC).
for obj in pdb/flash-sale-api networkpolicy/flash-sale-worker configmap/flash-sale-config; do
  k -n $ns delete "$obj" >/dev/null
  eventually 30 k -n $ns get "$obj" || fail "$obj deleted by hand was not restored within 30 s (is it watched?)"
done
pass "a PDB, a NetworkPolicy and a ConfigMap deleted by hand are each restored within 30 s"

# ---------------------------------------------------------------- edits

gen=$(jpath tps/flash-sale .metadata.generation)
k -n $ns patch tps flash-sale --type merge -p '{"spec":{"api":{"maxReplicas":30}}}' >/dev/null
hpa_max_30() { [ "$(jpath hpa/flash-sale-api .spec.maxReplicas)" = 30 ]; }
eventually 60 hpa_max_30 || fail "api.maxReplicas 30 did not reach the HPA"
observed() { [ "$(jpath tps/flash-sale .status.observedGeneration)" -gt "$gen" ]; }
eventually 60 observed || fail "observedGeneration did not move after an edit"
pass "api.maxReplicas 20 -> 30 reached the HPA; observedGeneration moved"

if out=$(k -n $ns patch tps flash-sale --type merge -p '{"spec":{"worker":{"shards":8}}}' 2>&1); then
  fail "worker.shards 16 -> 8 was accepted"
fi
grep -qi immutable <<<"$out" || fail "worker.shards refused, but not as immutable: $out"
pass "worker.shards edit refused: $(grep -oi '[^:]*immutable[^"]*' <<<"$out" | head -1)"

k -n $ns patch tps flash-sale --type merge -p '{"spec":{"worker":{"autoscaling":"hpa"}}}' >/dev/null
switched() { gone scaledobject.keda.sh/flash-sale-worker && k -n $ns get hpa/flash-sale-worker; }
eventually 60 switched || fail "keda -> hpa: the ScaledObject was not replaced by a worker HPA"
pass "worker.autoscaling keda -> hpa: ScaledObject deleted, worker HPA created"

# ---------------------------------------------------------------- CEL

bad() { # JSON merge patch on the sample, renamed `bad`
  sample | sed -E "s#^  name: flash-sale#  name: bad#" | k patch --local -f - --type merge -p "$1" -o yaml
}
refused "api.minReplicas > api.maxReplicas" "minReplicas" "$(bad '{"spec":{"api":{"minReplicas":30}}}')"
refused "worker.maxReplicas > worker.shards" "shards" "$(bad '{"spec":{"worker":{"maxReplicas":32}}}')"
refused "keda without nats.monitoringEndpoint" "monitoringEndpoint" \
  "$(bad '{"spec":{"nats":{"monitoringEndpoint":null}}}')"

# ---------------------------------------------------------------- two on one NATS

# A second resource on the same NATS must neither take over nor delete the first's streams:
# each stream carries its owner's UID, checked before any update or delete.
jsz() { curl -fsS "$NATS_MONITOR_URL/jsz?streams=true&config=true" || fail "NATS monitoring unreachable"; }
stream_owner() { # stream
  jsz | jq -r --arg s "$1" \
    '.account_details[]?.stream_detail[]? | select(.name == $s) | .config.metadata["throughput.dev/owner-uid"]'
}
stream_names() { jsz | jq -r '[.account_details[]?.stream_detail[]?.name] | join(" ")'; }
for s in ORDERS USERS DEAD_LETTERS; do
  [ "$(stream_owner $s)" = "$uid" ] || fail "stream $s is not marked as flash-sale's: '$(stream_owner $s)'"
done
sample | sed -E -e 's#^  name: flash-sale#  name: intruder#' -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' |
  k apply -f - >/dev/null
eventually 60 condition_is intruder StreamsReady False || fail "intruder's StreamsReady: $(jpath tps/intruder .status)"
msg=$(jpath tps/intruder '.status.conditions[?(@.type=="StreamsReady")].message')
grep -q "belongs to shop/flash-sale" <<<"$msg" || fail "intruder refused, but not for the owner: $msg"
condition_is intruder Ready False || fail "intruder is Ready without streams"
k -n $ns delete tps intruder --wait=false >/dev/null
eventually 60 gone tps/intruder || fail "intruder was not deleted (finalizer stuck?)"
for s in ORDERS USERS DEAD_LETTERS; do
  [ "$(stream_owner $s)" = "$uid" ] || fail "deleting intruder (policy Delete) took stream $s"
done
condition_is flash-sale Ready True || fail "flash-sale is no longer Ready"
pass "a second resource on the same NATS is refused the streams and its Delete leaves them (owner UID in metadata)"

# ---------------------------------------------------------------- deletion

# Retain (the sample's policy): the finalizer lets go after StreamsRetained; the children go
# with their owner through kube-controller-manager's garbage collector.
k -n $ns delete tps flash-sale --wait=false >/dev/null
eventually 60 gone tps/flash-sale || fail "flash-sale was not deleted (finalizer stuck?)"
has_event flash-sale StreamsRetained || fail "no StreamsRetained event: $(events_for flash-sale)"
children_gone() { gone deployment/flash-sale-api && gone deployment/flash-sale-worker && gone hpa/flash-sale-api; }
eventually 90 children_gone || fail "the children of flash-sale were not garbage-collected"
pass "deletionPolicy Retain: StreamsRetained, finalizer released, children garbage-collected"

# Delete: a re-created flash-sale takes over the streams its predecessor retained (same
# namespace/name, new UID), and deleting it under Delete removes them.
sample | sed -E -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' | k apply -f - >/dev/null
k -n $ns scale deployment/flash-sale-worker --replicas=2 >/dev/null 2>&1 ||
  { eventually 60 k -n $ns get deployment/flash-sale-worker; k -n $ns scale deployment/flash-sale-worker --replicas=2 >/dev/null; }
eventually 120 condition_is flash-sale StreamsReady True || fail "the re-created flash-sale did not take its streams over: $(jpath tps/flash-sale .status.conditions)"
new_uid=$(jpath tps/flash-sale .metadata.uid)
[ "$new_uid" != "$uid" ] && [ "$(stream_owner ORDERS)" = "$new_uid" ] || fail "ORDERS not marked with the new UID"
pass "a re-created resource (same name, new UID) takes over the retained streams"
k -n $ns delete tps flash-sale --wait=false >/dev/null
eventually 60 gone tps/flash-sale || fail "flash-sale was not deleted under Delete (finalizer stuck?)"
eventually 30 has_event flash-sale StreamsDeleted || fail "no StreamsDeleted event: $(events_for flash-sale)"
names=$(stream_names) || fail "cannot list the streams"
[ -z "$names" ] || fail "streams survived deletionPolicy Delete: $names"
pass "deletionPolicy Delete: StreamsDeleted, the streams are gone, finalizer released"

log "control plane e2e passed"
