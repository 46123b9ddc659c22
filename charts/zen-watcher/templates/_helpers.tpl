{{/* The chart name, or nameOverride. */}}
{{- define "zen-watcher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: the release name, with the chart name unless it holds it. */}}
{{- define "zen-watcher.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zen-watcher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zen-watcher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zen-watcher.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "zen-watcher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "zen-watcher.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zen-watcher.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zen-watcher.redisName" -}}
{{- printf "%s-redis" (include "zen-watcher.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The value of REDIS_ADDR; empty without Redis. Fails on a mode that lacks its addresses. */}}
{{- define "zen-watcher.redisAddr" -}}
{{- $r := .Values.redis }}
{{- if eq $r.mode "bundled" }}
{{- printf "%s:6379" (include "zen-watcher.redisName" .) }}
{{- else if has $r.mode (list "external" "sentinel" "cluster") }}
{{- if not $r.addresses }}{{ fail (printf "redis.mode %s needs redis.addresses" $r.mode) }}{{ end }}
{{- if and (eq $r.mode "external") (gt (len $r.addresses) 1) }}{{ fail "redis.mode external takes one address; use cluster or sentinel for several" }}{{ end }}
{{- if and (eq $r.mode "sentinel") (not $r.masterName) }}{{ fail "redis.mode sentinel needs redis.masterName" }}{{ end }}
{{- join "," $r.addresses }}
{{- end }}
{{- end }}

{{/* Requests and limits: a preset by traffic, or the resources value. The requests sit above
what a replica was measured to hold on a real node (docs/PERFORMANCE.md, "On a real node"). */}}
{{- define "zen-watcher.resources" -}}
{{- $presets := dict
  "small" (dict "requests" (dict "cpu" "50m" "memory" "64Mi") "limits" (dict "memory" "128Mi"))
  "medium" (dict "requests" (dict "cpu" "200m" "memory" "96Mi") "limits" (dict "memory" "256Mi"))
  "large" (dict "requests" (dict "cpu" "1" "memory" "192Mi") "limits" (dict "memory" "512Mi")) }}
{{- if eq .Values.resourcesPreset "custom" }}
{{- toYaml .Values.resources }}
{{- else }}
{{- toYaml (get $presets .Values.resourcesPreset) }}
{{- end }}
{{- end }}

{{/* A Go duration in seconds, for OBSERVATION_TTL_SECONDS. */}}
{{- define "zen-watcher.ttlSeconds" -}}
{{- mul .Values.lifecycle.cleanup.ttlDays 86400 }}
{{- end }}

{{/* The webhook listener's TLS Secret: the one named, else the one the chart generates. */}}
{{- define "zen-watcher.webhookTLSSecret" -}}
{{- if .Values.webhook.tls.secretName }}
{{- .Values.webhook.tls.secretName }}
{{- else if .Values.webhook.tls.generate }}
{{- printf "%s-webhook-tls" (include "zen-watcher.fullname" .) }}
{{- else }}
{{- fail "webhook.tls.enabled needs webhook.tls.secretName, or webhook.tls.generate=true" }}
{{- end }}
{{- end }}
