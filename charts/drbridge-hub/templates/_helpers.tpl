{{/* Chart name, overridable. */}}
{{- define "drbridge-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. The release name alone when it already contains the chart name, so
`helm install drbridge-hub charts/drbridge-hub` names things `drbridge-hub`.
*/}}
{{- define "drbridge-hub.fullname" -}}
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

{{- define "drbridge-hub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drbridge-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drbridge-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "drbridge-hub.labels" -}}
helm.sh/chart: {{ include "drbridge-hub.chart" . }}
{{ include "drbridge-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: drbridge
app.kubernetes.io/component: hub
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "drbridge-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drbridge-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "drbridge-hub.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the CA of agent client certificates: its own, or the serving cert's. */}}
{{- define "drbridge-hub.caSecretName" -}}
{{- default .Values.tls.secretName .Values.tls.clientCA.secretName }}
{{- end }}

{{/* PromQL label matchers of this hub's series: prometheusRule.selector, or the ServiceMonitor's job. */}}
{{- define "drbridge-hub.metricsSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "job=\"%s-admin\", namespace=\"%s\"" (include "drbridge-hub.fullname" .) .Release.Namespace) }}
{{- end }}
