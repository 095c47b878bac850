{{/* Names and labels shared by every template. */}}

{{- define "canary-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object names: the release name when it already says canary-bot. */}}
{{- define "canary-bot.fullname" -}}
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

{{- define "canary-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "canary-bot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "canary-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: canary-bot
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "canary-bot.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The leader Lease's name is fixed in the code (rollout/controller.py). */}}
{{- define "canary-bot.leaseName" -}}
canary-bot-leader
{{- end }}

{{/* Where the webhook Secret canary-bot-webhooks is read: config.webhooks.secretNamespace,
else the release namespace (the bot's default, its Lease namespace). */}}
{{- define "canary-bot.webhookSecretNamespace" -}}
{{- $namespace := .Release.Namespace }}
{{- with .Values.config }}{{ with .webhooks }}{{ with .secretNamespace }}{{ $namespace = . }}{{ end }}{{ end }}{{ end }}
{{- $namespace }}
{{- end }}

{{/* The config file's YAML: values.config without top-level nulls. Helm deletes a null
only where the chart has a default; a key set to null without one (config.webhooks:
null) means "the bot's default" here too, instead of a file the bot refuses. */}}
{{- define "canary-bot.configFile" -}}
{{- $config := dict }}
{{- range $key, $value := (.Values.config | default dict) }}
{{- if not (kindIs "invalid" $value) }}{{ $_ := set $config $key $value }}{{ end }}
{{- end }}
{{- toYaml $config }}
{{- end }}
