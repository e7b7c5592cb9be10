#!/usr/bin/env bash
# Builds the box's Apache-2.0 components from their Go modules, at the versions .env pins, into the cache that
# `obsbox up --runtime native` searches: $OBSBOX_CACHE_DIR (default ~/.cache/obsbox/bin)/<component>/<version>/.
#   - the OpenTelemetry Collector, with the Collector Builder and collector/manifest.yaml (exactly the components
#     collector/config.yaml uses, plus debug), every module at the one release of OTELCOL_IMAGE;
#   - Prometheus 3 and promtool (module v0.3XX.Y = Prometheus 3.XX.Y; API only, no web UI assets);
#   - Alertmanager and amtool;
#   - Jaeger v2 (module v1.(63+N).Y = Jaeger 2.N.Y: the project tags each release twice);
#   - Helm (helm.sh/helm/v4, HELM_VERSION), which tests/deploy/ runs on deploy/helm/obsbox;
#   - the Docker Compose CLI plugin (docker-compose, DOCKER_COMPOSE_VERSION), which the tests run on stack.yml.
# A binary already built for its version is kept (a second run takes seconds). Without a Go toolchain it says
# what it skips and exits 0. Loki and Grafana are AGPL and are not built here. Usage:
#   scripts/build-components.sh [collector|prometheus|alertmanager|jaeger|helm|compose ...]    (default: all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${OBSBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/obsbox/bin}"
say() { echo "obsbox build: $*" >&2; }

pin() {  # the tag of an image in .env: pin OTELCOL_IMAGE -> 0.165.0
  local line
  line="$(grep -E "^$1=" "$root/.env" | tail -1)" || { say "no $1 in .env"; exit 2; }
  line="${line#*=}"; line="${line##*:}"; echo "${line#v}"
}

if ! command -v go >/dev/null; then
  say "no Go toolchain on PATH: skipping the Collector, Prometheus, Alertmanager, Jaeger, Helm and Compose builds" \
      "(install Go >= 1.26 to build them; the tests that need them will say so)"
  exit 0
fi

export GOFLAGS="${GOFLAGS:--trimpath}" CGO_ENABLED=0
work="$(mktemp -d "${TMPDIR:-/tmp}/obsbox-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

done_already() {  # component version binary...
  local dir="$cache/$1/$2"; shift 2
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

install_into() {  # component version built-dir binary...
  local dir="$cache/$1/$2" from="$3"; shift 3
  mkdir -p "$dir"
  for b in "$@"; do install -m 0755 "$from/$b" "$dir/.$b.tmp" && mv -f "$dir/.$b.tmp" "$dir/$b"; done
}

bin_of() {  # a package argument of go_tools -> the binary's name: "name=package" names it, else the last element
  case "$1" in *=*) echo "${1%%=*}" ;; *) basename "$1" ;; esac
}

go_tools() {  # component version module-version ldflags tags package...  (one scratch module, `go get -tool`)
  local comp="$1" ver="$2" modver="$3" ldflags="$4" tags="$5"; shift 5
  local mod="$work/$comp" out="$work/$comp/out" pkg bins=()
  for pkg in "$@"; do bins+=("$(bin_of "$pkg")"); done
  if done_already "$comp" "$ver" "${bins[@]}"; then say "$comp $ver: already built in $cache/$comp/$ver"; return; fi
  local t0=$SECONDS
  mkdir -p "$out"
  (cd "$mod" && go mod init "obsbox.build/$comp" >/dev/null 2>&1)
  say "$comp $ver: fetching modules (${1#*=}@$modver)"
  for pkg in "$@"; do (cd "$mod" && go get -tool "${pkg#*=}@$modver" >"$mod/get.log" 2>&1) \
    || { cat "$mod/get.log" >&2; say "$comp: go get failed"; return 1; }; done
  if [ "$comp" = alertmanager ]; then stub_alertmanager_ui "$mod" "$modver"; fi
  say "$comp $ver: compiling ${bins[*]} (several minutes on 2 cores)"
  for pkg in "$@"; do
    (cd "$mod" && go build -tags "$tags" -ldflags "-s -w $ldflags" -o "$out/$(bin_of "$pkg")" "${pkg#*=}") \
      || { say "$comp: go build $pkg failed"; return 1; }
  done
  install_into "$comp" "$ver" "$out" "${bins[@]}"
  case "$comp" in  # built from Go modules alone: their web UIs' assets are not in the modules
    prometheus|alertmanager|jaeger) echo "built from the Go module without the web UI; the API is whole" \
      >"$cache/$comp/$ver/NO-WEB-UI" ;;
  esac
  say "$comp $ver: built in $((SECONDS - t0)) s -> $cache/$comp/$ver"
}

stub_alertmanager_ui() {  # scratch-module modver
  # The module's source embeds ui/app/dist, the built web UI, which its release archive has and the module does
  # not. Build from a copy with a one-page stand-in: the API (/api/v2) and the health endpoints are all the box uses.
  local mod="$1" src="$1/alertmanager-src"
  cp -r "$(cd "$mod" && go list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)" "$src"
  chmod -R u+w "$src"
  mkdir -p "$src/ui/app/dist"
  echo '<!doctype html><title>Alertmanager</title><p>Built by obsbox without the web UI: the API is at /api/v2.' \
    >"$src/ui/app/dist/index.html"
  (cd "$mod" && go mod edit -replace "github.com/prometheus/alertmanager=./alertmanager-src" && go mod tidy >/dev/null 2>&1)
}

build_collector() {
  local ver; ver="$(pin OTELCOL_IMAGE)"
  if done_already collector "$ver" otelcol-contrib; then say "collector $ver: already built in $cache/collector/$ver"; return; fi
  local t0=$SECONDS dir="$work/collector"
  mkdir -p "$dir"
  say "collector $ver: installing the Collector Builder v$ver"
  GOBIN="$dir/bin" go install "go.opentelemetry.io/collector/cmd/builder@v$ver" >"$dir/builder.log" 2>&1 \
    || { cat "$dir/builder.log" >&2; say "collector: the builder did not install"; return 1; }
  sed -e "s/@OTELCOL_VERSION@/$ver/g" -e "s#@OUTPUT@#$dir/dist#" "$root/collector/manifest.yaml" >"$dir/manifest.yaml"
  say "collector $ver: building otelcol-contrib from collector/manifest.yaml (about 10 minutes on 2 cores)"
  "$dir/bin/builder" --config "$dir/manifest.yaml" >"$dir/build.log" 2>&1 \
    || { tail -40 "$dir/build.log" >&2; say "collector: the build failed"; return 1; }
  install_into collector "$ver" "$dir/dist" otelcol-contrib
  say "collector $ver: built in $((SECONDS - t0)) s -> $cache/collector/$ver"
}

build_prometheus() {
  local ver mv; ver="$(pin PROMETHEUS_IMAGE)"
  IFS=. read -r major minor patch <<<"$ver"
  mv="v0.$((major * 100 + minor)).$patch"
  # remove_all_sd: only the static and file service discovery the box uses (upstream's build tags; the cloud
  # providers' SDKs would double the build time).
  go_tools prometheus "$ver" "$mv" "-X github.com/prometheus/common/version.Version=$ver" remove_all_sd \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
}

build_alertmanager() {
  local ver; ver="$(pin ALERTMANAGER_IMAGE)"
  go_tools alertmanager "$ver" "v$ver" "-X github.com/prometheus/common/version.Version=$ver" "" \
    github.com/prometheus/alertmanager/cmd/alertmanager github.com/prometheus/alertmanager/cmd/amtool
}

build_helm() {
  local ver; ver="$(pin HELM_VERSION)"
  go_tools helm "$ver" "v$ver" "-X helm.sh/helm/v4/internal/version.version=v$ver" "" helm.sh/helm/v4/cmd/helm
}

build_jaeger() {
  local ver major minor patch; ver="$(pin JAEGER_IMAGE)"
  IFS=. read -r major minor patch <<<"$ver"
  go_tools jaeger "$ver" "v1.$((63 + minor)).$patch" "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$ver" "" github.com/jaegertracing/jaeger/cmd/jaeger
}

build_compose() {
  # The CLI plugin's main package is .../cmd; docker finds it as cli-plugins/docker-compose, and it also runs
  # standalone under that name. internal.Version is what `docker compose version` prints.
  local ver; ver="$(pin DOCKER_COMPOSE_VERSION)"
  go_tools compose "$ver" "v$ver" "-X github.com/docker/compose/v5/internal.Version=v$ver" "" \
    docker-compose=github.com/docker/compose/v5/cmd
}

wanted=("$@"); [ ${#wanted[@]} -eq 0 ] && wanted=(collector prometheus alertmanager jaeger helm compose)
failed=()
t_all=$SECONDS
for c in "${wanted[@]}"; do
  case "$c" in
    collector|prometheus|alertmanager|jaeger|helm|compose) "build_$c" || failed+=("$c") ;;
    *) say "unknown component '$c' (known: collector prometheus alertmanager jaeger helm compose)"; exit 2 ;;
  esac
done
say "done in $((SECONDS - t_all)) s; cache: $cache"
if [ ${#failed[@]} -gt 0 ]; then say "FAILED: ${failed[*]} (see the messages above)"; exit 1; fi
