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
#   - CEL refuses bad specs (min > max, max > shards, keda without a monitoring endpoint,
#     redis with both url and urlSecretRef);
#   - the operator's ServiceAccount may read Secrets but never write them (the chart's RBAC
#     is what it runs with); rotating a referenced Secret changes the pod-template hash;
#   - two resources on one NATS get their own streams and consumers (names from
#     namespace/name, the owner's UID in the stream metadata); deleting one (Delete) leaves
#     the other's; a third pointed at the first's names is refused them;
#   - a child name taken by a foreign object is refused, not adopted, and the object untouched;
#   - monitoring.podMonitor: a condition while the PodMonitor CRD is missing, the PodMonitor
#     once a stand-in CRD is installed, pruned when turned off;
#   - two operator processes: one leads, the other stands by and takes over when the leader
#     is killed; an operator killed mid-reconcile (a failpoint aborts it) converges on restart;
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
# TPS_CONTROL_PLANE_PORT_OFFSET moves them all, for two runs on one machine.
o=${TPS_CONTROL_PLANE_PORT_OFFSET:-0}
export TPS_ETCD_PORT=$((22379 + o)) TPS_APISERVER_PORT=$((26443 + o)) TPS_KCM_PORT=$((20357 + o)) \
  TPS_SCHEDULER_PORT=$((20359 + o)) TPS_KWOK_PORT=$((20347 + o)) TPS_OPERATOR_PORT=$((28080 + o)) \
  TPS_NATS_PORT=$((24222 + o)) TPS_NATS_MONITOR_PORT=$((28222 + o)) TPS_PG_PORT=$((25432 + o)) TPS_REDIS_PORT=$((26379 + o))
STANDBY_PORT=$((28081 + o)) CRASHING_PORT=$((28082 + o))
# scripts/test has just built the workspace; its tps-operator is current. (A build of the
# operator alone would unify other features and recompile much of the dependency tree.)
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tps-target}"
if [ -x "$CARGO_TARGET_DIR/debug/tps-operator" ]; then export TPS_OPERATOR_BUILD=0; fi
# The operator elects a leader even alone, so a second process stands by (see below).
export TPS_OPERATOR_LEADER_ELECTION=on
STANDBY_PID='' RESTARTED_PID=''
cleanup() {
  for pid in $STANDBY_PID $RESTARTED_PID; do kill "$pid" 2>/dev/null || true; done
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
# It reads the referenced Secrets (to hash them onto the pod templates) and never writes one.
for verb in get list watch; do
  [ "$(k auth can-i $verb secrets -n $ns --as=$sa)" = yes ] || fail "the operator may not $verb Secrets"
done
for verb in create update patch delete; do
  [ "$(k auth can-i $verb secrets -n $ns --as=$sa)" = no ] || fail "the operator may $verb Secrets"
done
[ "$(k auth can-i patch deployments.apps -n $ns --as=$sa)" = yes ] || fail "the operator may not patch Deployments"
pass "the operator runs with the chart's RBAC (Secrets: get/list/watch only)"

# ---------------------------------------------------------------- Secret rotation rolls the pods

secrets_hash() { jpath "deployment/flash-sale-$1" '.spec.template.metadata.annotations.throughput\.dev/secrets-hash'; }
api_hash=$(secrets_hash api); worker_hash=$(secrets_hash worker)
[ -n "$api_hash" ] && [ "$api_hash" = "$worker_hash" ] || fail "no secrets hash on the pod templates: '$api_hash' '$worker_hash'"
k -n $ns create secret generic tps-auth --from-literal=jwt-secret="rotated-$RANDOM-0123456789abcdef0123456789abcdef" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
rotated() { [ "$(secrets_hash api)" != "$api_hash" ] && [ "$(secrets_hash worker)" != "$worker_hash" ]; }
eventually 30 rotated || fail "rotating tps-auth did not change the pod-template hash ($api_hash)"
pass "rotating the referenced Secret tps-auth changed both pod templates' secrets hash (a rollout)"

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
refused "redis with both url and urlSecretRef" "exactly one of url and urlSecretRef" \
  "$(bad '{"spec":{"redis":{"urlSecretRef":{"name":"tps-redis","key":"url"}}}}')"
refused "a stream prefix that is not one subject token" "streams.prefix" \
  "$(bad '{"spec":{"nats":{"streams":{"prefix":"a.b"}}}}')"

# ---------------------------------------------------------------- two on one NATS

# Each resource gets streams, subjects and consumers of its own (<namespace>_<name>_…), each
# stream marked with its owner's UID, checked before any update or delete.
jsz() { curl -fsS "$NATS_MONITOR_URL/jsz?streams=true&consumers=true&config=true" || fail "NATS monitoring unreachable"; }
stream_owner() { # stream
  jsz | jq -r --arg s "$1" \
    '.account_details[]?.stream_detail[]? | select(.name == $s) | .config.metadata["throughput.dev/owner-uid"]'
}
stream_subject() { jsz | jq -r --arg s "$1" '.account_details[]?.stream_detail[]? | select(.name == $s) | .config.subjects[0]'; }
consumers_of() { jsz | jq -r --arg s "$1" '[.account_details[]?.stream_detail[]? | select(.name == $s) | .consumer_detail[]?.name] | length'; }
has_consumer() { jsz | jq -e --arg s "$1" --arg c "$2" \
  '[.account_details[]?.stream_detail[]? | select(.name == $s) | .consumer_detail[]?.name] | index($c)' >/dev/null; }
stream_names() { jsz | jq -r '[.account_details[]?.stream_detail[]?.name] | sort | join(" ")'; }
for s in ORDERS USERS DEAD_LETTERS; do
  [ "$(stream_owner "shop_flash-sale_$s")" = "$uid" ] ||
    fail "stream shop_flash-sale_$s is not marked as flash-sale's: '$(stream_owner "shop_flash-sale_$s")' (streams: $(stream_names))"
done
[ "$(stream_subject shop_flash-sale_ORDERS)" = "shop_flash-sale.orders.*" ] || fail "flash-sale's ORDERS subjects"
has_consumer shop_flash-sale_ORDERS shop_flash-sale_orders-15 || fail "no consumer shop_flash-sale_orders-15"
cm() { jpath "configmap/$1-config" ".data.$2"; }
[ "$(cm flash-sale NATS_STREAM_PREFIX)/$(cm flash-sale NATS_STREAMS_CREATE)/$(cm flash-sale NATS_REPLICAS)" = "shop_flash-sale/false/1" ] ||
  fail "flash-sale's ConfigMap does not hand the binaries their stream names: $(jpath configmap/flash-sale-config .data)"
[ "$(cm flash-sale API_TRUSTED_PROXIES)" = "10.0.0.0/8" ] || fail "API_TRUSTED_PROXIES is not the spec's: '$(cm flash-sale API_TRUSTED_PROXIES)'"
pass "flash-sale: streams shop_flash-sale_{ORDERS,USERS,DEAD_LETTERS} marked with its UID; its ConfigMap names them (NATS_STREAMS_CREATE=false)"

# A second resource on the same NATS (Redis from a Secret this time), with policy Delete.
k -n $ns create secret generic tps-redis --from-literal=url="$REDIS_URL" --dry-run=client -o yaml | k apply -f - >/dev/null
sample | sed -E -e 's#^  name: flash-sale#  name: second#' -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' |
  k patch --local -f - --type merge -o yaml \
    -p '{"spec":{"redis":{"url":null,"urlSecretRef":{"name":"tps-redis","key":"url"}},"worker":{"shards":4,"maxReplicas":4}}}' |
  k apply -f - >/dev/null
eventually 60 condition_is second StreamsReady True || fail "second's StreamsReady: $(jpath tps/second .status.conditions)"
second_uid=$(jpath tps/second .metadata.uid)
for s in ORDERS USERS DEAD_LETTERS; do
  [ "$(stream_owner "shop_second_$s")" = "$second_uid" ] || fail "shop_second_$s is not second's: $(stream_names)"
done
[ "$(consumers_of shop_second_ORDERS)" = 4 ] && has_consumer shop_second_USERS shop_second_users-3 ||
  fail "second's consumers: $(jsz | jq -c '[.account_details[]?.stream_detail[]? | {name, consumers: [.consumer_detail[]?.name]}]')"
[ "$(cm second REDIS_URL)" = "" ] || fail "a Redis URL from a Secret was copied into the ConfigMap"
redis_env=$(jpath deployment/second-api '.spec.template.spec.containers[0].env[?(@.name=="REDIS_URL")].valueFrom.secretKeyRef.name')
[ "$redis_env" = tps-redis ] || fail "REDIS_URL does not come from redis.urlSecretRef: '$redis_env'"
pass "second on the same NATS: its own streams and 4 consumers per command stream (shop_second_*), REDIS_URL from its Secret"

# A third pointed at flash-sale's names is refused them (the owner UID in the metadata).
sample | sed -E -e 's#^  name: flash-sale#  name: intruder#' -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' |
  k patch --local -f - --type merge -o yaml -p '{"spec":{"nats":{"streams":{"prefix":"shop_flash-sale"}}}}' |
  k apply -f - >/dev/null
eventually 60 condition_is intruder StreamsReady False || fail "intruder's StreamsReady: $(jpath tps/intruder .status)"
msg=$(jpath tps/intruder '.status.conditions[?(@.type=="StreamsReady")].message')
grep -q "belongs to shop/flash-sale" <<<"$msg" || fail "intruder refused, but not for the owner: $msg"
eventually 30 has_event intruder StreamsFailed || fail "no StreamsFailed event for intruder: $(events_for intruder)"
condition_is intruder Ready False || fail "intruder is Ready without streams"
pass "a third resource given flash-sale's stream names is refused them (StreamsReady False, StreamsFailed event)"

for t in intruder second; do k -n $ns delete tps $t --wait=false >/dev/null; done
eventually 60 gone tps/intruder || fail "intruder was not deleted (finalizer stuck?)"
eventually 60 gone tps/second || fail "second was not deleted (finalizer stuck?)"
second_gone() { [ -z "$(stream_owner shop_second_ORDERS)" ] && [ -z "$(stream_owner shop_second_DEAD_LETTERS)" ]; }
eventually 30 second_gone || fail "second's streams survived its deletion under Delete: $(stream_names)"
for s in ORDERS USERS DEAD_LETTERS; do
  [ "$(stream_owner "shop_flash-sale_$s")" = "$uid" ] || fail "deleting second or intruder (policy Delete) took shop_flash-sale_$s"
done
[ "$(consumers_of shop_flash-sale_ORDERS)" = 16 ] || fail "flash-sale lost consumers: $(consumers_of shop_flash-sale_ORDERS)"
condition_is flash-sale Ready True || fail "flash-sale is no longer Ready"
pass "deleting second and intruder (Delete) removed second's streams only; flash-sale's streams and 16 consumers stand"

# ---------------------------------------------------------------- no adoption

# A ConfigMap of the name a new resource wants, made by someone else: it stays as it was.
k -n $ns create configmap squatter-config --from-literal=owner=someone-else >/dev/null
sample | sed -E -e 's#^  name: flash-sale#  name: squatter#' -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' |
  k apply -f - >/dev/null
reason_is squatter Ready AdoptionRefused 2>/dev/null || eventually 60 reason_is squatter Ready AdoptionRefused ||
  fail "squatter's Ready is not AdoptionRefused: $(jpath tps/squatter .status.conditions)"
msg=$(jpath tps/squatter '.status.conditions[?(@.type=="Ready")].message')
grep -q "ConfigMap squatter-config exists and is not controlled" <<<"$msg" || fail "refused, but saying: $msg"
eventually 30 has_event squatter AdoptionRefused || fail "no AdoptionRefused event: $(events_for squatter)"
[ "$(jpath configmap/squatter-config .data)" = '{"owner":"someone-else"}' ] || fail "the foreign ConfigMap was changed: $(jpath configmap/squatter-config .data)"
[ -z "$(jpath configmap/squatter-config .metadata.ownerReferences)" ] || fail "the foreign ConfigMap was adopted"
gone deployment/squatter-api || fail "squatter's Deployment was applied next to a refused ConfigMap"
k -n $ns delete tps squatter --wait=false >/dev/null
eventually 60 gone tps/squatter || fail "squatter was not deleted (finalizer stuck?)"
k -n $ns get configmap/squatter-config >/dev/null || fail "the foreign ConfigMap went with the refused resource"
k -n $ns delete configmap squatter-config >/dev/null
pass "a foreign ConfigMap under a child's name: AdoptionRefused (condition and event), the ConfigMap untouched"

# ---------------------------------------------------------------- PodMonitor

# Asked for without the prometheus-operator: a condition says so, nothing else fails.
k -n $ns patch tps flash-sale --type merge -p '{"spec":{"monitoring":{"podMonitor":true}}}' >/dev/null
eventually 60 reason_is flash-sale MonitoringReady PodMonitorCRDMissing ||
  fail "no MonitoringReady PodMonitorCRDMissing: $(jpath tps/flash-sale .status.conditions)"
condition_is flash-sale Ready True || fail "a missing PodMonitor CRD made flash-sale not Ready"
pass "monitoring.podMonitor without its CRD: MonitoringReady False (PodMonitorCRDMissing), still Ready"
# A minimal stand-in for the prometheus-operator's CRD; the operator retries within 30 s.
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: podmonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PodMonitor, plural: podmonitors, singular: podmonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
k wait --for=condition=Established crd/podmonitors.monitoring.coreos.com --timeout=30s >/dev/null
eventually 60 condition_is flash-sale MonitoringReady True || fail "MonitoringReady did not turn True: $(jpath tps/flash-sale .status.conditions)"
[ "$(jpath podmonitor/flash-sale '.metadata.ownerReferences[0].uid')" = "$uid" ] || fail "the PodMonitor is not owned by flash-sale"
[ "$(jpath podmonitor/flash-sale '.spec.podMetricsEndpoints[0].port')" = metrics ] || fail "the PodMonitor does not scrape the metrics port"
k -n $ns patch tps flash-sale --type merge -p '{"spec":{"monitoring":null}}' >/dev/null
eventually 60 gone podmonitor/flash-sale || fail "the PodMonitor stayed after monitoring was removed"
no_monitoring_condition() { [ -z "$(jpath tps/flash-sale '.status.conditions[?(@.type=="MonitoringReady")].type')" ]; }
eventually 30 no_monitoring_condition || fail "MonitoringReady stayed after monitoring was removed"
pass "with the PodMonitor CRD installed: PodMonitor flash-sale (owned, port metrics), MonitoringReady True; removed when turned off"

# ---------------------------------------------------------------- two operators, and a crash

lease_holder() { k -n tps-system get lease tps-operator-leader -o jsonpath='{.spec.holderIdentity}'; }
holder_is() { [ "$(lease_holder)" = "$1" ]; }
operator_env=(env KUBECONFIG="$STATE/operator.kubeconfig" POD_NAMESPACE=tps-system LEADER_ELECTION=on RUST_LOG=info)
first="tps-operator-$(hostname)"
holder_is "$first" || fail "the first operator does not hold the Lease: '$(lease_holder)'"
"${operator_env[@]}" POD_NAME=tps-operator-standby OPERATOR_HTTP_LISTEN=127.0.0.1:$STANDBY_PORT \
  "$CARGO_TARGET_DIR/debug/tps-operator" >"$STATE/logs/standby.log" 2>&1 &
STANDBY_PID=$!
eventually 30 curl -fsS "http://127.0.0.1:$STANDBY_PORT/healthz" || fail "the standby operator did not start: $(tail -5 "$STATE/logs/standby.log")"
eventually 30 grep -q "waiting for leadership" "$STATE/logs/standby.log" || fail "the standby is not waiting for the Lease"
holder_is "$first" || fail "the standby took the Lease from a live leader: '$(lease_holder)'"
! grep -q "leading; reconciling" "$STATE/logs/standby.log" || fail "the standby leads next to a live leader"
pass "a second operator process stands by while the first holds the Lease ($first)"

kill -9 "$(cat "$STATE/tps-operator.pid")"
eventually 45 holder_is tps-operator-standby || fail "the standby did not take the Lease over: '$(lease_holder)'"
k -n $ns patch tps flash-sale --type merge -p '{"spec":{"api":{"maxReplicas":40}}}' >/dev/null
hpa_max_40() { [ "$(jpath hpa/flash-sale-api .spec.maxReplicas)" = 40 ]; }
eventually 60 hpa_max_40 || fail "the new leader did not reconcile api.maxReplicas 40"
pass "the leader killed (-9): the standby took the Lease over and reconciles"

# A crash mid-reconcile: the next leader aborts (failpoint) right after applying a ConfigMap,
# as kill -9 would; a new TPS is then half-made (finalizer, streams, ConfigMap). Restarted,
# the operator converges.
sample | sed -E -e 's#^  name: flash-sale#  name: restart#' -e 's#deletionPolicy: Retain#deletionPolicy: Delete#' |
  k patch --local -f - --type merge -o yaml \
    -p '{"spec":{"api":{"minReplicas":1,"ingress":null},"worker":{"autoscaling":"hpa","minReplicas":1,"shards":2,"maxReplicas":2}}}' |
  k apply -f - >/dev/null
eventually 60 k -n $ns get configmap/restart-config || fail "the standby never reconciled restart"
kill -9 "$STANDBY_PID"; wait "$STANDBY_PID" 2>/dev/null || true; STANDBY_PID=''
k -n $ns delete configmap restart-config >/dev/null # only the crashing run may make it again
rc=0
{ # (the braces keep bash's "Aborted" job message out of the output)
  "${operator_env[@]}" POD_NAME=tps-operator-crashing OPERATOR_HTTP_LISTEN=127.0.0.1:$CRASHING_PORT \
    TPS_FAILPOINT=crash-after-config-map timeout 90 "$CARGO_TARGET_DIR/debug/tps-operator" >"$STATE/logs/crashing.log" 2>&1
} 2>/dev/null || rc=$?
[ "$rc" = 134 ] && grep -q "failpoint crash-after-config-map" "$STATE/logs/crashing.log" ||
  fail "the failpoint did not abort the operator mid-reconcile (exit $rc): $(tail -5 "$STATE/logs/crashing.log")"
pass "an operator aborted mid-reconcile (exit 134 after applying a ConfigMap)"
setsid "${operator_env[@]}" POD_NAME="$first" OPERATOR_HTTP_LISTEN="127.0.0.1:$TPS_OPERATOR_PORT" \
  "$CARGO_TARGET_DIR/debug/tps-operator" >>"$STATE/logs/tps-operator.log" 2>&1 </dev/null &
RESTARTED_PID=$!
echo "$RESTARTED_PID" >"$STATE/tps-operator.pid"
eventually 120 condition_is restart Ready True || fail "restart did not converge after the crash: $(jpath tps/restart .status.conditions)"
for obj in configmap/restart-config deployment/restart-api deployment/restart-worker hpa/restart-worker; do
  k -n $ns get "$obj" >/dev/null || fail "$obj missing after the restart"
done
[ "$(stream_owner shop_restart_ORDERS)" = "$(jpath tps/restart .metadata.uid)" ] || fail "restart's streams"
condition_is flash-sale Ready True || fail "flash-sale is not Ready after the restarts"
pass "restarted after the crash, the operator converged: restart Ready with every child"
k -n $ns delete tps restart --wait=false >/dev/null
eventually 60 gone tps/restart || fail "restart was not deleted"

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
[ "$new_uid" != "$uid" ] && [ "$(stream_owner shop_flash-sale_ORDERS)" = "$new_uid" ] || fail "ORDERS not marked with the new UID"
pass "a re-created resource (same name, new UID) takes over the retained streams"
k -n $ns delete tps flash-sale --wait=false >/dev/null
eventually 60 gone tps/flash-sale || fail "flash-sale was not deleted under Delete (finalizer stuck?)"
eventually 30 has_event flash-sale StreamsDeleted || fail "no StreamsDeleted event: $(events_for flash-sale)"
names=$(stream_names) || fail "cannot list the streams"
[ -z "$names" ] || fail "streams survived deletionPolicy Delete: $names"
pass "deletionPolicy Delete: StreamsDeleted, the streams are gone, finalizer released"

log "control plane e2e passed"
