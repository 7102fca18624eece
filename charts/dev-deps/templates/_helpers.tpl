{{/* Labels shared by every object of the chart. */}}
{{- define "dev-deps.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: throughput-dev
{{- end }}

{{/* Hardening shared by the containers: no privilege, no capabilities. */}}
{{- define "dev-deps.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The Postgres URL the api and worker get as DATABASE_URL. */}}
{{- define "dev-deps.databaseUrl" -}}
{{- with .Values.postgres -}}
postgres://{{ .user }}:{{ .password }}@postgres:5432/{{ .database }}
{{- end }}
{{- end }}
