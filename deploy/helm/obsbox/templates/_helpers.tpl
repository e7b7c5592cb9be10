{{/* Labels of every resource. */}}
{{- define "obsbox.labels" -}}
app.kubernetes.io/name: obsbox
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A name from a file's base name: "alerts/prometheus/slo.rules.yml" -> "slo-rules". */}}
{{- define "obsbox.fileName" -}}
{{- base . | trimSuffix ".yml" | trimSuffix ".yaml" | trimSuffix ".json" | replace "." "-" | replace "_" "-" | lower -}}
{{- end }}

{{/* The in-cluster OTLP/HTTP address of this release's Collector (the operator names its Service <name>-collector). */}}
{{- define "obsbox.collectorEndpoint" -}}
{{- printf "http://%s-collector.%s:4318" .Release.Name .Release.Namespace -}}
{{- end }}

{{/* An Alertmanager matcher string ('severity="critical"') as an AlertmanagerConfig matcher. */}}
{{- define "obsbox.matcher" -}}
{{- $re := "^\\s*([a-zA-Z_][a-zA-Z0-9_]*)\\s*(=~|!~|!=|=)\\s*\"(.*)\"\\s*$" -}}
{{- if not (regexMatch $re .) }}{{ fail (printf "alertmanager.yml: matcher %q is not of the form name=\"value\"" .) }}{{ end -}}
{{- toJson (dict "name" (regexReplaceAll $re . "${1}") "matchType" (regexReplaceAll $re . "${2}") "value" (regexReplaceAll $re . "${3}")) -}}
{{- end }}

{{/* A route of alertmanager.yml (snake_case) as an AlertmanagerConfig route (camelCase), with its sub-routes. */}}
{{- define "obsbox.route" -}}
{{- $keys := dict "receiver" "receiver" "group_by" "groupBy" "group_wait" "groupWait" "group_interval" "groupInterval" "repeat_interval" "repeatInterval" "continue" "continue" "mute_time_intervals" "muteTimeIntervals" "active_time_intervals" "activeTimeIntervals" -}}
{{- $out := dict -}}
{{- range $key, $value := . -}}
{{- if eq $key "matchers" -}}
{{- $matchers := list -}}
{{- range $value }}{{ $matchers = append $matchers (include "obsbox.matcher" . | fromJson) }}{{ end -}}
{{- $_ := set $out "matchers" $matchers -}}
{{- else if eq $key "routes" -}}
{{- $routes := list -}}
{{- range $value }}{{ $routes = append $routes (include "obsbox.route" . | fromJson) }}{{ end -}}
{{- $_ := set $out "routes" $routes -}}
{{- else if hasKey $keys $key -}}
{{- $_ := set $out (get $keys $key) $value -}}
{{- else -}}
{{- fail (printf "alertmanager.yml: route key %q has no AlertmanagerConfig twin in this chart" $key) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* toYaml writes matchType "=" bare, which a YAML 1.1 reader (PyYAML) takes for the value tag: quote it. */}}
{{- define "obsbox.quoteMatchTypes" -}}
{{- regexReplaceAll "(?m)(matchType: )(=~|!~|!=|=)$" . "${1}\"${2}\"" -}}
{{- end }}
