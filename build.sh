#!/usr/bin/env bash
# Builds the Ruth AI runtime base image, the model images and the Ruth AI Core image, online or air-gapped.
# The usage text below is the reference; runtime-base-image/README.md explains the why.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE_CONTEXT=$ROOT/runtime-base-image
RUNTIME_PROJECT=$ROOT/packages/ruth-ai-model-runtime
RUNTIME_REPO=ruth-ai/model-runtime
CORE_CONTEXT=$ROOT/core-image
CORE_PROJECT=$ROOT/packages/ruth-ai-core
CORE_REPO=ruth-ai/core
DEFAULT_BASE_IMAGE=python:3.11-slim
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-local/debian-python:bookworm}
WHEELHOUSE=.wheelhouse
# Wheels built from the same sources are byte-identical, so Docker's layer cache survives a rebuild.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}

PYTHON=${PYTHON:-python3}
DOCKER=${DOCKER:-docker}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

usage() {
    cat <<EOF
Usage: build.sh [OPTIONS] [COMMAND [ARGS]]

Commands:
  base                 (default) build $RUNTIME_REPO:<version> and :latest; <version> is the
                       version in packages/ruth-ai-model-runtime/pyproject.toml
  model DIR...         build each model directory (models/<id>/) as ruth-ai/<model_id>:<model_version>
                       and :latest, FROM $RUNTIME_REPO:<version> (build argument RUNTIME_VERSION),
                       which must exist: build it first with "base" (same options)
  core                 build $CORE_REPO:<core version> and :latest (Ruth AI Core, core-image/), FROM
                       $RUNTIME_REPO:<version> like the models; <core version> is the version in
                       packages/ruth-ai-core/pyproject.toml
  all                  base, core, then every models/*/ that has a Dockerfile
  wheelhouse base|core|DIR
                       only fill the wheelhouse of the base context, of core-image/ or of a model
                       directory
  local-base           make $LOCAL_BASE_IMAGE with debootstrap and docker import (as root,
                       about 2.5 minutes); does nothing if the image exists
  version              print the runtime version

Options:
  --wheelhouse         install every Python package from <context>/$WHEELHOUSE/, which this script
                       fills with the host's pip (pip wheel); the build runs with --network none
                       and build argument OFFLINE=1 (pip --no-index). Without it only the runtime's
                       own wheel goes into the wheelhouse and everything else comes from the index.
  --base-image IMAGE   build argument BASE_IMAGE of the base image (default $DEFAULT_BASE_IMAGE)
  --air-gapped         --wheelhouse --base-image $LOCAL_BASE_IMAGE
  --no-cache           build without Docker's layer cache
  -h, --help           this text

Two modes, one Dockerfile:
  production   ./build.sh all
               python:3.11-slim from the registry, packages from the package index.
  air-gapped   ./build.sh local-base && ./build.sh --air-gapped all     (local-base as root)
               a local Debian base, packages only from wheelhouses filled on this host
               (its pip configuration, proxy and certificates stay on the host, never in an image).

After each build the images the build left untagged are removed: the install stage (0.5 to
1.5 GB each on a copying storage driver) and the image a new build took the tags from. So a
rebuild runs the install stage again instead of reusing it from the layer cache.

Model directory convention (models/_template/ follows it):
  Dockerfile                  two stages, see runtime-base-image/README.md; the install stage runs
                              "ruth-install-model /build" and the final stage copies /opt/ruth-ai
  model.yaml, handler, weights   weights are checked against model.yaml's sha256 at build time too
  requirements.txt            the model's packages (optional); runtime packages are already there
  requirements-no-deps.txt    packages installed with --no-deps (optional)
  $WHEELHOUSE/                   filled by this script with --wheelhouse; never committed

Environment:
  PYTHON         host interpreter whose pip fills wheelhouses (default python3); its version
                 must match the image's Python (3.11) because wheels are version-specific
  DOCKER         docker client (default docker)
  DEBIAN_MIRROR  mirror for local-base (default $DEBIAN_MIRROR)
  LOCAL_BASE_IMAGE  the image local-base makes and --air-gapped builds on
                 (default local/debian-python:bookworm)
  RUNTIME_TAG    build the base as $RUNTIME_REPO:RUNTIME_TAG only (no :latest) and build models
                 and core FROM it (default: <version>); the docker tests use it to leave your images alone
EOF
}

die() { echo "build.sh: $*" >&2; exit 2; }

SCRATCH=()
trap 'rm -rf "${SCRATCH[@]}"' EXIT
# Sets SCRATCH_DIR to a new temporary directory that is removed when the script exits.
new_scratch_dir() {
    SCRATCH_DIR=$(mktemp -d)
    SCRATCH+=("$SCRATCH_DIR")
}

# project_version DIR: the version in DIR/pyproject.toml.
project_version() {
    sed -n 's/^version = "\([^"]*\)"$/\1/p' "$1/pyproject.toml"
}

runtime_version() {
    project_version "$RUNTIME_PROJECT"
}

# The base image's tag: what base builds and model builds start FROM.
runtime_tag() {
    echo "${RUNTIME_TAG:-$(runtime_version)}"
}

# A top-level scalar of a model.yaml (model_id, model_version), quotes and comments stripped.
yaml_field() {
    sed -n "s/^$2:[[:space:]]*[\"']\{0,1\}\([^\"' #]*\).*/\1/p" "$1/model.yaml" | head -n 1
}

pip_wheel() {
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check "$@"
}

# project_wheel PROJECT HOUSE: PROJECT's own wheel into HOUSE, built from a clean copy of the project
# (tracked and untracked-but-not-ignored files) so stale build/ directories never leak into it.
project_wheel() {
    local project=$1 house=$2
    new_scratch_dir
    git -C "$project" ls-files -z --cached --others --exclude-standard -- . \
        | tar -C "$project" --null --files-from - --ignore-failed-read -cf - 2>/dev/null | tar -C "$SCRATCH_DIR" -xf -
    pip_wheel --no-deps --wheel-dir "$house" "$SCRATCH_DIR"
}

fill_base_wheelhouse() {
    local house=$BASE_CONTEXT/$WHEELHOUSE
    rm -rf "$house" && mkdir -p "$house"
    project_wheel "$RUNTIME_PROJECT" "$house"
    if [[ $OFFLINE == 1 ]]; then
        pip_wheel --wheel-dir "$house" "$house"/ruth_ai_model_runtime-*.whl
    fi
    echo "wheelhouse $house: $(ls "$house" | wc -l) wheels" >&2
}

# Core's wheel and, with --wheelhouse, the packages it adds to the base image: its requirements
# except the runtime, which is not on any index and is already in the base (so numpy, OpenCV and
# the other runtime packages are not copied into this context again).
fill_core_wheelhouse() {
    local house=$CORE_CONTEXT/$WHEELHOUSE requirements
    rm -rf "$house" && mkdir -p "$house"
    project_wheel "$CORE_PROJECT" "$house"
    [[ $OFFLINE == 1 ]] || return 0
    requirements=$SCRATCH_DIR/core-requirements.txt
    "$PYTHON" - "$house"/ruth_ai_core-*.whl >"$requirements" <<'PYTHON_EOF'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode())
for requirement in metadata.get_all("Requires-Dist") or []:
    if not requirement.startswith("ruth-ai-model-runtime"):
        print(requirement)
PYTHON_EOF
    pip_wheel --wheel-dir "$house" --requirement "$requirements"
    echo "wheelhouse $house: $(ls "$house" | wc -l) wheels" >&2
}

fill_model_wheelhouse() {
    local dir=$1 house=$1/$WHEELHOUSE
    rm -rf "$house"
    [[ $OFFLINE == 1 ]] || return 0
    mkdir -p "$house"
    if [[ -f $dir/requirements.txt ]]; then
        pip_wheel --wheel-dir "$house" --requirement "$dir/requirements.txt"
    fi
    if [[ -f $dir/requirements-no-deps.txt ]]; then
        pip_wheel --no-deps --wheel-dir "$house" --requirement "$dir/requirements-no-deps.txt"
    fi
    echo "wheelhouse $house: $(ls "$house" | wc -l) wheels" >&2
}

image_exists() {
    "$DOCKER" image inspect "$1" >/dev/null 2>&1
}

# The two ways to build the runtime base image, for messages.
base_commands() {
    echo "  ./build.sh base                                          (online: $DEFAULT_BASE_IMAGE, package index)"
    echo "  ./build.sh local-base && ./build.sh --air-gapped base    (air-gapped; local-base as root)"
}

# docker_build CONTEXT TAG... [BUILD OPTIONS]: build, then remove what the build left untagged.
# With Docker's classic builder the install stage stays behind as an untagged image (0.5 to 1.5 GB
# on vfs), and an image the new build took its tags from is untagged too. Candidates are only the
# images of this build's own log (" ---> <id>" after each step) and the images its tags named
# before; each is removed only while it has no tag, and "docker rmi" without --force refuses an
# image that has children (the final image's layers) or a container.
docker_build() {
    local context=$1 tags=() previous=() tag log status=0
    shift
    while [[ $# -gt 0 && $1 != --* ]]; do tags+=("$1"); shift; done
    local args=(build --force-rm --file "$context/Dockerfile" --build-arg "OFFLINE=$OFFLINE")
    [[ $OFFLINE == 1 ]] && args+=(--network none)
    [[ $NO_CACHE == 1 ]] && args+=(--no-cache)
    for tag in "${tags[@]}"; do
        args+=(--tag "$tag")
        previous+=("$("$DOCKER" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)")
    done
    new_scratch_dir
    log=$SCRATCH_DIR/build.log
    "$DOCKER" "${args[@]}" "$@" "$context" 2>&1 | tee "$log" || status=$?  # errors too, for the hints below
    local steps=()
    mapfile -t steps < <(sed -n 's/^ ---> \([0-9a-f]\{12\}\)$/\1/p' "$log" | tac)
    remove_untagged "${steps[@]}" "${previous[@]}"
    [[ $status == 0 ]] && return 0
    if [[ $OFFLINE == 0 ]] && grep -qE 'registry-1\.docker\.io|pull access denied|dial tcp|TLS handshake timeout' "$log"; then
        die "docker build of $context failed (exit $status): the image registry is not reachable from here.
Build without it, from a local Debian base and this host's pip:
  ./build.sh local-base && ./build.sh --air-gapped ${COMMAND_LINE[*]}    (local-base as root)"
    fi
    die "docker build of $context failed (exit $status); its output is above"
}

remove_untagged() {
    local image removed=0
    local -A seen=()
    for image in "$@"; do
        [[ -n $image && -z ${seen[$image]:-} ]] || continue
        seen[$image]=1
        [[ $("$DOCKER" image inspect --format '{{len .RepoTags}}' "$image" 2>/dev/null) == 0 ]] || continue
        "$DOCKER" rmi "$image" >/dev/null 2>&1 && removed=$((removed + 1))
    done
    if [[ $removed -gt 0 ]]; then
        echo "build.sh: removed $removed untagged image(s) left by this build (install stage, replaced image)" >&2
    fi
}

build_base() {
    local version tags
    version=$(runtime_version)
    tags=("$RUNTIME_REPO:$(runtime_tag)")
    [[ -n ${RUNTIME_TAG:-} ]] || tags+=("$RUNTIME_REPO:latest")
    if [[ $BASE_IMAGE == "$LOCAL_BASE_IMAGE" ]] && ! image_exists "$BASE_IMAGE"; then
        die "the air-gapped base $BASE_IMAGE is missing; make it first (as root, about 2.5 minutes):
  ./build.sh local-base"
    fi
    fill_base_wheelhouse
    docker_build "$BASE_CONTEXT" "${tags[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "RUNTIME_VERSION=$version"
}

# The base image a model or core build starts FROM, or the commands that build it.
require_base_image() {
    image_exists "$RUNTIME_REPO:$(runtime_tag)" || die "the base image $RUNTIME_REPO:$(runtime_tag) \
is missing ($1 builds FROM it); build it first, once:
$(base_commands)"
}

build_core() {
    local version
    version=$(project_version "$CORE_PROJECT")
    require_base_image "$CORE_CONTEXT"
    fill_core_wheelhouse
    docker_build "$CORE_CONTEXT" "$CORE_REPO:$version" "$CORE_REPO:latest" \
        --build-arg "RUNTIME_VERSION=$(runtime_tag)" --build-arg "CORE_VERSION=$version"
}

build_model() {
    local dir=${1%/} id version
    [[ -f $dir/Dockerfile && -f $dir/model.yaml ]] || die "$dir: not a model directory (needs Dockerfile and model.yaml)"
    id=$(yaml_field "$dir" model_id)
    version=$(yaml_field "$dir" model_version)
    [[ -n $id && -n $version ]] || die "$dir/model.yaml: model_id or model_version missing"
    require_base_image "$dir"
    fill_model_wheelhouse "$dir"
    docker_build "$dir" "ruth-ai/$id:$version" "ruth-ai/$id:latest" --build-arg "RUNTIME_VERSION=$(runtime_tag)"
}

build_local_base() {
    if "$DOCKER" image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
        echo "$LOCAL_BASE_IMAGE exists" >&2
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "local-base needs root (debootstrap): sudo ./build.sh local-base"
    command -v debootstrap >/dev/null || die "local-base needs debootstrap (apt-get install debootstrap)"
    local rootfs
    new_scratch_dir
    rootfs=$SCRATCH_DIR
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$DEBIAN_MIRROR" >&2
    # What a runtime image never reads: package caches, manuals, translations (licences stay).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale/*
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    chmod 0755 "$rootfs"  # mktemp made it 0700, and tar records it as the image's /
    tar -C "$rootfs" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE_IMAGE"
}

OFFLINE=0
NO_CACHE=0
BASE_IMAGE=$DEFAULT_BASE_IMAGE
while [[ $# -gt 0 ]]; do
    case $1 in
        --wheelhouse) OFFLINE=1 ;;
        --base-image) [[ $# -ge 2 ]] || die "--base-image needs an image"; BASE_IMAGE=$2; shift ;;
        --air-gapped) OFFLINE=1; BASE_IMAGE=$LOCAL_BASE_IMAGE ;;
        --no-cache) NO_CACHE=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
    shift
done

command=${1:-base}
COMMAND_LINE=("$command" "${@:2}")  # for messages
[[ $# -gt 0 ]] && shift
case $command in
    base) build_base ;;
    core) build_core ;;
    model)
        [[ $# -gt 0 ]] || die "model needs at least one directory"
        for dir in "$@"; do build_model "$dir"; done ;;
    all)
        build_base
        build_core
        for dockerfile in "$ROOT"/models/*/Dockerfile; do
            [[ -f $dockerfile ]] && build_model "$(dirname "$dockerfile")"
        done ;;
    wheelhouse)
        [[ $# -eq 1 ]] || die "wheelhouse needs 'base', 'core' or a model directory"
        case $1 in
            base) fill_base_wheelhouse ;;
            core) fill_core_wheelhouse ;;
            *) fill_model_wheelhouse "${1%/}" ;;
        esac ;;
    local-base) build_local_base ;;
    version) runtime_version ;;
    *) die "unknown command $command (see --help)" ;;
esac
