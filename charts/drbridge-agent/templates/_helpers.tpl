{{/* Chart name, overridable. */}}
{{- define "drbridge-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. The release name alone when it already contains the chart name, so
`helm install drbridge-agent charts/drbridge-agent` names things `drbridge-agent`.
*/}}
{{- define "drbridge-agent.fullname" -}}
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

{{- define "drbridge-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drbridge-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drbridge-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "drbridge-agent.labels" -}}
helm.sh/chart: {{ include "drbridge-agent.chart" . }}
{{ include "drbridge-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: drbridge
app.kubernetes.io/component: agent
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "drbridge-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drbridge-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "drbridge-agent.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the CA of the hub's serving certificate: its own, or the client cert's. */}}
{{- define "drbridge-agent.caSecretName" -}}
{{- default .Values.tls.secretName .Values.tls.hubCA.secretName }}
{{- end }}

{{/*
The allowlist file drbridge-agent reads (--allowlist): kinds as group/kind only, the
`resource` of each entry is for the chart's RBAC. Same JSON shape as
drbridge_model::Allowlist.
*/}}
{{- define "drbridge-agent.allowlistJson" -}}
{{- $kinds := list }}
{{- range .Values.allowlist.kinds }}
{{- $k := dict "group" .group "kind" .kind }}
{{- with .resourceNames }}{{ $_ := set $k "names" . }}{{ end }}
{{- with .namespaces }}{{ $_ := set $k "namespaces" . }}{{ end }}
{{- if hasKey . "labels" }}{{ $_ := set $k "labels" .labels }}{{ end }}
{{- $kinds = append $kinds $k }}
{{- end }}
{{- $views := list }}
{{- range .Values.views.resources }}
{{- $v := dict "group" .group "resource" .resource }}
{{- with .resourceNames }}{{ $_ := set $v "names" . }}{{ end }}
{{- $views = append $views $v }}
{{- end }}
{{- $ns := .Values.allowlist.namespaces }}
{{- $namespaces := dict "allow" $ns.allow "deny" $ns.deny "protect" ($ns.protect | default list) }}
{{- dict "kinds" $kinds "namespaces" $namespaces "deniedLabels" (.Values.allowlist.deniedLabels | default list) "views" $views | toPrettyJson }}
{{- end }}

{{/* "true" in join mode: a join token is configured (as a value or in a Secret). */}}
{{- define "drbridge-agent.joinMode" -}}
{{- if and .Values.join.token .Values.join.tokenSecret.name }}
{{- fail "join.token and join.tokenSecret.name are alternatives: set one" }}
{{- end }}
{{- if or .Values.join.token .Values.join.tokenSecret.name }}true{{ end }}
{{- end }}

{{/* The Secret and key holding the join token. */}}
{{- define "drbridge-agent.joinTokenSecret" -}}
{{- default (printf "%s-join-token" (include "drbridge-agent.fullname" .)) .Values.join.tokenSecret.name }}
{{- end }}
{{- define "drbridge-agent.joinTokenKey" -}}
{{- if .Values.join.tokenSecret.name }}{{ .Values.join.tokenSecret.key }}{{ else }}token{{ end }}
{{- end }}

{{/* PromQL label matchers of this agent's series: prometheusRule.selector, or the release namespace. */}}
{{- define "drbridge-agent.metricsSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "namespace=\"%s\"" .Release.Namespace) }}
{{- end }}
