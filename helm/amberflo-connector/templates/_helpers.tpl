{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "amberflo-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: fullnameOverride, else <release>-<chart>, else just
<release> when it already contains the chart name.
*/}}
{{- define "amberflo-connector.fullname" -}}
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

{{- define "amberflo-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "amberflo-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amberflo-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "amberflo-connector.labels" -}}
helm.sh/chart: {{ include "amberflo-connector.chart" . }}
{{ include "amberflo-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of the reconcile CronJob and its pods: another app.kubernetes.io/name, so that the
Deployment's Service and PodDisruptionBudget (which select name + instance) never count them.
*/}}
{{- define "amberflo-connector.reconcileLabels" -}}
helm.sh/chart: {{ include "amberflo-connector.chart" . }}
app.kubernetes.io/name: {{ printf "%s-reconcile" (include "amberflo-connector.name" . | trunc 53) }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: reconcile
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "amberflo-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "amberflo-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "amberflo-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Worker processes per pod (1 when workers is null). */}}
{{- define "amberflo-connector.workers" -}}
{{- if kindIs "invalid" .Values.workers }}1{{ else }}{{ .Values.workers | int }}{{ end }}
{{- end }}

{{/*
Probe action for `path`. One worker: an HTTP GET on the metrics port. Several workers (worker
i serves on metrics.port + i): a small exec check that every worker answers 200, so a stalled
worker other than the first is noticed too.
Call with (dict "root" $ "path" "/healthz").
*/}}
{{- define "amberflo-connector.probeAction" -}}
{{- $workers := include "amberflo-connector.workers" .root | int }}
{{- if eq $workers 1 }}
httpGet:
  path: {{ .path }}
  port: metrics
{{- else }}
{{- $first := .root.Values.metrics.port | int }}
exec:
  command:
    - python
    - -c
    - {{ printf "import urllib.request as u\nfor p in range(%d, %d):\n    u.urlopen('http://127.0.0.1:%%d%s' %% p, timeout=2)" $first (add $first $workers) .path | quote }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Amberflo API key: the existing one or the chart's. */}}
{{- define "amberflo-connector.apiKeySecretName" -}}
{{- if .Values.amberflo.apiKey.value }}
{{- include "amberflo-connector.fullname" . }}
{{- else }}
{{- .Values.amberflo.apiKey.existingSecret }}
{{- end }}
{{- end }}

{{/*
Environment every connector container gets (the Deployment's and the reconcile CronJob's):
the Amberflo API key and the secret Kafka properties, all from Secrets.
*/}}
{{- define "amberflo-connector.secretEnv" -}}
- name: CONNECTOR_AMBERFLO__API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "amberflo-connector.apiKeySecretName" . }}
      key: {{ .Values.amberflo.apiKey.secretKey }}
{{- range .Values.kafka.consumerSecretProperties }}
- name: {{ printf "CONNECTOR_KAFKA__CONSUMER__%s" (upper .property) }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- with .Values.schemaRegistry.passwordSecret }}
{{- if .secretName }}
- name: CONNECTOR_SCHEMA_REGISTRY__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The connector's YAML config file. Keys are the connector's own setting names (snake_case,
see docs/configuration.md and connector/settings/); extraConfig is deep-merged over them. The API key is never in it.
*/}}
{{- define "amberflo-connector.config" -}}
{{- $kafka := dict
    "bootstrap_servers" .Values.kafka.bootstrapServers
    "group_id" .Values.kafka.groupId
    "topics" .Values.kafka.topics
    "assignment_strategy" .Values.kafka.assignmentStrategy
    "consumer" .Values.kafka.consumer
    "producer" .Values.kafka.producer }}
{{- $amberflo := dict "base_url" .Values.amberflo.baseUrl }}
{{- if .Values.amberflo.ingestUrl }}
{{- $_ := set $amberflo "ingest_url" .Values.amberflo.ingestUrl }}
{{- end }}
{{- $sink := dict
    "batch_size" .Values.sink.batchSize
    "linger_ms" .Values.sink.lingerMs
    "max_in_flight" .Values.sink.maxInFlight
    "request_timeout_s" .Values.sink.requestTimeoutS
    "gzip" .Values.sink.gzip
    "max_buffered_records" .Values.sink.maxBufferedRecords
    "max_buffered_events" .Values.sink.maxBufferedEvents
    "max_buffered_mb" .Values.sink.maxBufferedMb
    "readiness_timeout_s" .Values.sink.readinessTimeoutS
    "mode" .Values.sink.mode }}
{{- if not (kindIs "invalid" .Values.sink.retryTimeoutS) }}
{{- $_ := set $sink "retry_timeout_s" .Values.sink.retryTimeoutS }}
{{- end }}
{{- $dlq := dict
    "header_style" .Values.dlq.headerStyle
    "partitions" .Values.dlq.partitions
    "replication_factor" .Values.dlq.replicationFactor }}
{{- if .Values.dlq.topic }}
{{- $_ := set $dlq "topic" .Values.dlq.topic }}
{{- end }}
{{- $s3 := dict
    "prefix" .Values.s3.prefix
    "object_records" .Values.s3.objectRecords
    "max_events" .Values.s3.maxEvents
    "linger_ms" .Values.s3.lingerMs
    "acl" .Values.s3.acl
    "failures_poll_s" .Values.s3.failuresPollS }}
{{- range $key, $value := dict "bucket" .Values.s3.bucket "region" .Values.s3.region "endpoint_url" .Values.s3.endpointUrl }}
{{- if $value }}
{{- $_ := set $s3 $key $value }}
{{- end }}
{{- end }}
{{- $registry := dict "timeout_s" .Values.schemaRegistry.timeoutS }}
{{- if .Values.schemaRegistry.url }}
{{- $_ := set $registry "url" .Values.schemaRegistry.url }}
{{- end }}
{{- if .Values.schemaRegistry.username }}
{{- $_ := set $registry "username" .Values.schemaRegistry.username }}
{{- end }}
{{- $config := dict
    "kafka" $kafka
    "schema_registry" $registry
    "amberflo" $amberflo
    "sink" $sink
    "s3" $s3
    "dlq" $dlq
    "mappings" .Values.mappings
    "meters" (dict "sync_on_start" .Values.meters.syncOnStart "definitions" .Values.meters.definitions)
    "log" (dict "level" .Values.logLevel "format" .Values.logFormat "levels" .Values.logLevels) }}
{{- $merged := mustMergeOverwrite (deepCopy $config) (deepCopy .Values.extraConfig) }}
{{- toYaml $merged }}
{{- end }}

{{/* Refuse combinations the schema cannot express. */}}
{{- define "amberflo-connector.validate" -}}
{{- if and .Values.schemaRegistry.username (not .Values.schemaRegistry.passwordSecret.secretName) }}
{{- fail "schemaRegistry.username needs schemaRegistry.passwordSecret (the connector takes both or neither)" }}
{{- end }}
{{- if and (eq .Values.sink.mode "s3") (not .Values.s3.bucket) }}
{{- fail "s3.bucket: required when sink.mode is s3 (the bucket Amberflo provisioned)" }}
{{- end }}
{{- if and (not .Values.amberflo.apiKey.existingSecret) (not .Values.amberflo.apiKey.value) }}
{{- fail "amberflo.apiKey: set existingSecret (name of a Secret holding the key) or value" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownTimeoutSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdownTimeoutSeconds (%v), or pods are killed mid-delivery" .Values.terminationGracePeriodSeconds .Values.shutdownTimeoutSeconds) }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- $workers := include "amberflo-connector.workers" . | int }}
{{- if gt (mul (int .Values.keda.maxReplicaCount) $workers) (int .Values.keda.partitions) }}
{{- fail (printf "keda.maxReplicaCount (%v) × workers (%d) must not exceed keda.partitions (%v): consumers beyond the partition count get no partitions" .Values.keda.maxReplicaCount $workers .Values.keda.partitions) }}
{{- end }}
{{- if gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount) }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled" }}
{{- end }}
{{- range .Values.extraConfig.amberflo | default dict | keys }}
{{- if eq . "api_key" }}
{{- fail "extraConfig.amberflo.api_key: the API key belongs in a Secret (amberflo.apiKey), not in the ConfigMap" }}
{{- end }}
{{- end }}
{{- end }}
