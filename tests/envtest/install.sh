#!/usr/bin/env bash
# Provides kube-apiserver and etcd for the deploy tests, the way envtest does.
#
# Where the binaries come from, first match wins:
#   1. $KUBEBUILDER_ASSETS holding kube-apiserver and etcd (what `setup-envtest use` prints, for users with
#      internet);
#   2. the project's cache folder, $CHAMPION_ENVTEST_DIR or ~/.cache/champion/envtest/v1.20.2 (a previous run
#      of this script);
#   3. a build from Debian's `kubernetes` source package plus Debian's `etcd-server` (root and apt-get needed;
#      about 4-8 minutes on 2 cores, 1.3 GB of memory). No registry these machines reach ships a
#      kube-apiserver binary, and Debian's own build of that source package only makes kubectl.
#
# Prints the folder holding both binaries on its last line of stdout; tests/envtest.py looks in the same places.
set -euo pipefail

VERSION=v1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
DEST=${CHAMPION_ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/champion/envtest/$VERSION}

log() { echo "envtest: $*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if [ -x "$DEST/kube-apiserver" ] && [ -x "$DEST/etcd" ]; then
  log "reusing $DEST"
  echo "$DEST"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "no kube-apiserver/etcd found and this is not a Debian machine as root: set KUBEBUILDER_ASSETS" \
      "(setup-envtest use 1.20.x -p path) or run this script as root on Debian/Ubuntu"
  exit 1
fi

started=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Debian's source lists, beside the binary ones, so `apt-get source` can fetch kubernetes (deb822 or
# one-line format, whichever this machine uses).
if [ -f /etc/apt/sources.list.d/debian.sources ] && [ ! -f /etc/apt/sources.list.d/champion-deb-src.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/champion-deb-src.sources
elif [ -f /etc/apt/sources.list ] && [ ! -f /etc/apt/sources.list.d/champion-deb-src.list ]; then
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/champion-deb-src.list
fi
log "installing golang-go, etcd-server (apt)"
apt-get update -qq
apt-get install -y -qq --no-install-recommends golang-go etcd-server golang-github-modern-go-reflect2-dev \
  dpkg-dev xz-utils >/dev/null

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
log "downloading the kubernetes $DEB_VERSION source package"
if ! apt-get source -qq --download-only "kubernetes=$DEB_VERSION" >/dev/null; then
  log "Debian's kubernetes source package $DEB_VERSION is not in this machine's sources (it is Debian 12" \
      "bookworm's); use setup-envtest and KUBEBUILDER_ASSETS instead"
  exit 1
fi
mkdir -p gopath/src/k8s.io/kubernetes
tar -xf kubernetes_*.orig.tar.* -C gopath/src/k8s.io/kubernetes --strip-components=1
export GOPATH=$WORK/gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE=$WORK/gocache
cd "$GOPATH/src/k8s.io/kubernetes"

# The vendored reflect2 v1.0.1 crashes at start-up with Go >= 1.18; Debian's 1.0.2 does not.
reflect2=vendor/github.com/modern-go/reflect2
rm -f "$reflect2"/*.go "$reflect2"/*.s
for f in /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s; do
  case "$f" in *_test.go) ;; *) [ -e "$f" ] && cp "$f" "$reflect2/" ;; esac
done

# The tarball lacks the generated OpenAPI definitions the API server serves; generate them as
# build/root/Makefile.generated_files does: every package with a +k8s:openapi-gen= tag (staging/ packages by
# their vendor/ path, which is how the rest of the tree imports them).
log "generating pkg/generated/openapi"
go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
input_dirs=$(grep -rl --include='*.go' -e '+k8s:openapi-gen=' --exclude-dir=_output --exclude-dir=.git . \
  | xargs -n1 dirname | sed -e 's|^\./||' -e 's|^staging/src/|vendor/|' | LC_ALL=C sort -u \
  | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
"$WORK/openapi-gen" --logtostderr=false \
  --go-header-file vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
  --output-base "$GOPATH/src" \
  --output-package k8s.io/kubernetes/pkg/generated/openapi \
  --output-file-base zz_generated.openapi \
  --report-filename /dev/null \
  --input-dirs "$input_dirs"

log "building kube-apiserver $VERSION (several minutes)"
go build -trimpath -o "$WORK/kube-apiserver" -ldflags "-s -w \
  -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion=$VERSION \
  -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMinor=20 \
  -X k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version.gitVersion=$VERSION" ./cmd/kube-apiserver

mkdir -p "$DEST"
install -m 0755 "$WORK/kube-apiserver" "$DEST/kube-apiserver"
install -m 0755 "$(command -v etcd || echo /usr/bin/etcd)" "$DEST/etcd"
"$DEST/kube-apiserver" --version >&2
log "built in $(( $(date +%s) - started )) s into $DEST"
echo "$DEST"
