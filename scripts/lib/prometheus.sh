#!/usr/bin/env bash
# shellcheck shell=bash
# ensure_prometheus: makes `prometheus` and `promtool` available, installing Debian's
# `prometheus` package with apt-get when they are missing. Idempotent and cheap when present.
#
# Used by tests/dashboards.rs (which runs this file) and sourceable by other scripts:
#     source scripts/lib/prometheus.sh && ensure_prometheus
# Run as a program it ensures the binaries and prints where they are:
#     PROMETHEUS=/usr/bin/prometheus
#     PROMTOOL=/usr/bin/promtool
#
# The package's maintainer scripts would start a system Prometheus on :9090 (init script);
# tests start their own servers on free ports, so the install runs with a policy-rc.d that
# forbids service starts (the Docker convention; an existing policy is left alone).
# FERRY_PROMETHEUS_BIN_DIR points at a directory holding both binaries instead (e.g. an
# upstream release unpacked by hand on a machine without apt).

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_prometheus_found() {
    if [[ -n "${FERRY_PROMETHEUS_BIN_DIR:-}" ]]; then
        [[ -x "$FERRY_PROMETHEUS_BIN_DIR/prometheus" && -x "$FERRY_PROMETHEUS_BIN_DIR/promtool" ]]
        return
    fi
    command -v prometheus > /dev/null && command -v promtool > /dev/null
}

_ensure_prometheus() {
    _prometheus_found && return 0
    [[ -z "${FERRY_PROMETHEUS_BIN_DIR:-}" ]] \
        || die "FERRY_PROMETHEUS_BIN_DIR=$FERRY_PROMETHEUS_BIN_DIR does not hold executable prometheus and promtool"
    mkdir -p "$CACHE_LOG_DIR"
    local logf="$CACHE_LOG_DIR/prometheus-install.log" policy=/usr/sbin/policy-rc.d made_policy=0
    log "installing Debian's prometheus package with apt-get (log: $logf)"
    if [[ ! -e $policy && $(id -u) == 0 ]]; then
        printf '#!/bin/sh\n# ferry scripts/lib/prometheus.sh: no service starts during this install\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local ok=0
    apt_install "$logf" "prometheus/promtool are missing: run 'sudo apt-get install --no-install-recommends prometheus', or install Prometheus 2.x and put prometheus and promtool on PATH (or set FERRY_PROMETHEUS_BIN_DIR)" prometheus && ok=1
    ((made_policy)) && rm -f "$policy"
    if ((!ok)); then
        tail -20 "$logf" >&2
        die "apt-get install prometheus failed (see $logf)"
    fi
    _prometheus_found || die "the prometheus package is installed but prometheus/promtool are not on PATH"
    log "installed $(prometheus --version 2>&1 | head -1)"
}

ensure_prometheus() { with_lock prometheus _ensure_prometheus; }

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ensure_prometheus
    if [[ -n "${FERRY_PROMETHEUS_BIN_DIR:-}" ]]; then
        echo "PROMETHEUS=$FERRY_PROMETHEUS_BIN_DIR/prometheus"
        echo "PROMTOOL=$FERRY_PROMETHEUS_BIN_DIR/promtool"
    else
        echo "PROMETHEUS=$(command -v prometheus)"
        echo "PROMTOOL=$(command -v promtool)"
    fi
fi
