{{/* The run id: explicit, or the release name (unique per namespace). */}}
{{- define "tps-k6.runId" -}}
{{- default .Release.Name .Values.runId -}}
{{- end }}

{{- define "tps-k6.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: tps-k6
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: loadtest
throughput.dev/scenario: {{ .Values.scenario }}
{{- end }}

{{/* The script file, refusing unknown scenarios at render time. */}}
{{- define "tps-k6.script" -}}
{{- $file := printf "scripts/%s.js" .Values.scenario -}}
{{- if not (.Files.Get $file) -}}
{{- fail (printf "unknown scenario %q: expected flash-sale, signup-burst, signup-sustained or read-mix" .Values.scenario) -}}
{{- end -}}
{{- printf "%s.js" .Values.scenario -}}
{{- end }}

{{/* Environment of the k6 container: the target, the run id, the secret, the knobs. */}}
{{- define "tps-k6.env" -}}
- name: BASE_URL
  value: {{ .Values.baseUrl | quote }}
- name: RUN_ID
  value: {{ include "tps-k6.runId" . | quote }}
- name: SCENARIO
  value: {{ .Values.scenario | quote }}
- name: AUTH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwtSecretRef.name }}
      key: {{ .Values.jwtSecretRef.key }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
