#!/usr/bin/env bash
# shellcheck shell=bash
# ensure_librocksdb: makes the RocksDB shared library available, installing Debian's
# `librocksdb7.8` package with apt-get when none is found. ferry loads it only to read a
# RocksMQ source (`[source.wal] rocksmq`); the tests of that path need it. Idempotent and
# cheap when present. FERRY_LIBROCKSDB may name the library file instead.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_librocksdb_found() {
    if [[ -n "${FERRY_LIBROCKSDB:-}" ]]; then
        [[ -f "$FERRY_LIBROCKSDB" ]]
        return
    fi
    /sbin/ldconfig -p 2> /dev/null | grep -q 'librocksdb\.so'
}

_ensure_librocksdb() {
    _librocksdb_found && return 0
    [[ -z "${FERRY_LIBROCKSDB:-}" ]] || die "FERRY_LIBROCKSDB=$FERRY_LIBROCKSDB is not a file"
    mkdir -p "$CACHE_LOG_DIR"
    local logf="$CACHE_LOG_DIR/librocksdb-install.log"
    log "installing Debian's librocksdb7.8 package with apt-get (log: $logf)"
    apt_install "$logf" "the RocksDB library is missing: run 'sudo apt-get install librocksdb7.8' (or set FERRY_LIBROCKSDB to a librocksdb.so)" librocksdb7.8 \
        || { tail -20 "$logf" >&2; die "apt-get install librocksdb7.8 failed (see $logf)"; }
    _librocksdb_found || die "librocksdb7.8 is installed but ldconfig does not list librocksdb.so"
    log "installed librocksdb7.8"
}

ensure_librocksdb() { with_lock librocksdb _ensure_librocksdb; }

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ensure_librocksdb
fi
