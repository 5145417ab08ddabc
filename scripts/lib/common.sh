# shellcheck shell=bash disable=SC2034  # (variables here are used by the scripts sourcing it)
# Shared paths, logging and idempotent installers for scripts/testenv and scripts/test.
# Sourced, not executed. Everything installed lands under $FERRY_CACHE (kept between
# sessions on the same machine); everything that runs lands under target/testenv/ (fresh
# data on every `up`).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB_DIR="$REPO_ROOT/scripts/lib"

FERRY_CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
CACHE_LOG_DIR="$FERRY_CACHE/logs"
MARKER_DIR="$FERRY_CACHE/markers"
LOCK_DIR="$FERRY_CACHE/locks"

# --- pinned versions (change here; the marker files notice and reinstall) -----------------
MILVUS_VERSION=2.3.5
TANSU_VERSION=0.6.0
# tansu's default features have no storage engine; dynostore,libsql give sqlite:// + memory://.
TANSU_FEATURES=dynostore,libsql

PYTHON_BOOT="${FERRY_PYTHON:-python3}"   # only used to create the venvs
VENV_M23="$FERRY_CACHE/venv-milvus23"
VENV_LITE="$FERRY_CACHE/venv-lite"
PY_M23="$VENV_M23/bin/python"
PY_LITE="$VENV_LITE/bin/python"
VENV_MOTO="$FERRY_CACHE/venv-moto"      # moto_server: the S3-compatible server of the tests
MOTO_SERVER="$VENV_MOTO/bin/moto_server"
MILVUS_HOME="$FERRY_CACHE/milvus-$MILVUS_VERSION"   # extracted server: $MILVUS_HOME/bin/milvus
MILVUS_BIN_DIR="$MILVUS_HOME/bin"
TANSU_ROOT="$FERRY_CACHE/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

TESTENV_DIR="$REPO_ROOT/target/testenv"
LOG_DIR="$TESTENV_DIR/logs"
PID_DIR="$TESTENV_DIR/pids"
ENV_FILE="$TESTENV_DIR/env.sh"

log() { printf '[testenv %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

sha_of() { sha256sum "$@" | awk '{print $1}' | sha256sum | cut -c1-16; }

# marker_ok NAME SPEC: true when step NAME was completed with exactly SPEC.
marker_ok() { [[ -f "$MARKER_DIR/$1" && "$(cat "$MARKER_DIR/$1")" == "$2" ]]; }
marker_set() { mkdir -p "$MARKER_DIR"; printf '%s' "$2" > "$MARKER_DIR/$1"; }

# with_lock NAME CMD...: serialise installers between concurrent `testenv up`s.
with_lock() {
    local name=$1; shift
    mkdir -p "$LOCK_DIR"
    (
        flock -w 3600 9 || die "could not take lock $LOCK_DIR/$name.lock"
        "$@"
    ) 9> "$LOCK_DIR/$name.lock"
}

# --- venvs ---------------------------------------------------------------------------------
# ensure_venv DIR REQUIREMENTS_FILE: (re)create DIR with exactly those pins, once.
_ensure_venv() {
    local dir=$1 req=$2 name spec
    name="$(basename "$dir")"   # venv-milvus23 / venv-lite
    spec="python=$("$PYTHON_BOOT" -c 'import sys; print(sys.version.split()[0])') req=$(sha_of "$req")"
    if marker_ok "$name" "$spec" && [[ -x "$dir/bin/python" ]]; then
        return 0
    fi
    log "installing $(basename "$dir") from ${req#"$REPO_ROOT"/} (log: $CACHE_LOG_DIR/$name.log)"
    mkdir -p "$CACHE_LOG_DIR"
    rm -rf "$dir"
    "$PYTHON_BOOT" -m venv "$dir" || die "python3 -m venv $dir failed"
    if ! "$dir/bin/pip" install --disable-pip-version-check --no-input -r "$req" \
            > "$CACHE_LOG_DIR/$name.log" 2>&1; then
        tail -20 "$CACHE_LOG_DIR/$name.log" >&2
        die "pip install into $dir failed (see $CACHE_LOG_DIR/$name.log)"
    fi
    marker_set "$name" "$spec"
}
ensure_venvs() {
    with_lock venv-milvus23 _ensure_venv "$VENV_M23" "$LIB_DIR/requirements-milvus23.txt"
    with_lock venv-lite _ensure_venv "$VENV_LITE" "$LIB_DIR/requirements-lite.txt"
    ensure_moto_venv
}
ensure_moto_venv() {
    with_lock venv-moto _ensure_venv "$VENV_MOTO" "$LIB_DIR/requirements-moto.txt"
}

# --- Milvus 2.3.5 server binary --------------------------------------------------------------
# The wheel ships bin/*.lzma; its wrapper (milvus._initialize_data_files) decompresses them
# into <base_dir>/bin on every start. We do it once into the cache, then swap librdkafka:
# the bundled 1.9.1 fails on tansu's ApiVersions v3 reply ("Read underflow"); the one inside
# the confluent-kafka wheel (2.16, same soname librdkafka.so.1, statically linked deps) works.
_ensure_milvus_bin() {
    local site lzma_sum rdk spec tmp
    site="$("$PY_M23" -c 'import milvus, os; print(os.path.dirname(milvus.__file__))')"
    rdk="$(compgen -G "$site/../confluent_kafka.libs/librdkafka-*.so.1" | head -1 || true)"
    [[ -n "$rdk" ]] || die "no librdkafka in the confluent-kafka wheel ($site/../confluent_kafka.libs)"
    lzma_sum="$(sha_of "$site/data/bin/milvus.lzma")"
    spec="milvus=$MILVUS_VERSION lzma=$lzma_sum librdkafka=$(basename "$rdk"):$(sha_of "$rdk")"
    if marker_ok milvus-bin "$spec" && [[ -x "$MILVUS_BIN_DIR/milvus" ]]; then
        return 0
    fi
    log "extracting Milvus $MILVUS_VERSION server into $MILVUS_HOME (one time)"
    tmp="$MILVUS_HOME.tmp.$$"
    rm -rf "$tmp"
    "$PY_M23" -c 'import sys, milvus; milvus._initialize_data_files(sys.argv[1])' "$tmp" \
        || die "decompressing the Milvus wheel's binaries failed"
    cp -f "$rdk" "$tmp/bin/librdkafka.so.1"
    chmod 755 "$tmp/bin/librdkafka.so.1"
    # Keep the wheel's template + glog.conf next to the binary: configs are rendered from them.
    mkdir -p "$tmp/template"
    cp "$site/data/config.yaml.template" "$site/data/glog.conf" "$tmp/template/"
    rm -rf "$MILVUS_HOME"
    mv "$tmp" "$MILVUS_HOME"
    marker_set milvus-bin "$spec"
}
ensure_milvus_bin() { with_lock milvus-bin _ensure_milvus_bin; }

# --- tansu (Kafka-protocol broker, built from crates.io) -------------------------------------
# ~11 minutes on 2 cores. If another `cargo install tansu` is already running (a teammate's
# background build, or a concurrent testenv), wait for it instead of starting a second one.
_tansu_ok() { [[ -x "$TANSU_BIN" ]] && "$TANSU_BIN" --version > /dev/null 2>&1; }
_ensure_tansu() {
    _tansu_ok && return 0
    local waited=0
    while pgrep -f "cargo install tansu" > /dev/null; do
        (( waited % 60 == 0 )) && log "waiting for the running 'cargo install tansu' (${waited}s so far; log: $CACHE_LOG_DIR/tansu-install.log)"
        sleep 5; waited=$((waited + 5))
        (( waited > 3600 )) && die "'cargo install tansu' still running after 1 h"
    done
    _tansu_ok && return 0
    command -v cargo > /dev/null || die "cargo not found: needed to build tansu $TANSU_VERSION"
    mkdir -p "$CACHE_LOG_DIR"
    log "building tansu $TANSU_VERSION with cargo install (11-22 min on 2 cores; log: $CACHE_LOG_DIR/tansu-install.log)"
    # A test broker needs no peak speed: a lighter release profile roughly halves the build.
    if ! CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
            CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
            cargo install tansu --version "$TANSU_VERSION" --features "$TANSU_FEATURES" --locked \
            --root "$TANSU_ROOT" > "$CACHE_LOG_DIR/tansu-install.log" 2>&1; then
        tail -30 "$CACHE_LOG_DIR/tansu-install.log" >&2
        die "cargo install tansu failed (see $CACHE_LOG_DIR/tansu-install.log)"
    fi
    _tansu_ok || die "tansu built but $TANSU_BIN does not run"
}
ensure_tansu() { with_lock tansu _ensure_tansu; }

# apt_get HINT ARGS...: apt-get ARGS (through `sudo -n` when not root, waiting for the dpkg
# lock); HINT is what to tell someone who must do it by hand.
apt_get() {
    local hint=$1 sudo=()
    shift
    if [[ $(id -u) != 0 ]]; then
        sudo -n true 2> /dev/null || die "installing needs root: $hint"
        sudo=(sudo -n)
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"
}

# apt_install LOG HINT PACKAGE...: installs Debian packages (updating the package lists once
# if they are too old to know them); the output goes to LOG.
apt_install() {
    local logf=$1 hint=$2
    shift 2
    command -v apt-get > /dev/null || die "there is no apt-get: $hint"
    apt_get "$hint" install --no-install-recommends "$@" > "$logf" 2>&1 \
        || { apt_get "$hint" update >> "$logf" 2>&1 && apt_get "$hint" install --no-install-recommends "$@" >> "$logf" 2>&1; }
}
