#!/usr/bin/env bash
# Builds the `coffer` binary workers run: Linux x86_64, linked against glibc 2.26 (Amazon Linux
# 2's; Amazon Linux 2023 has 2.34) with zig as C compiler and linker, so the one build starts on
# both. A build on this Debian would need glibc 2.36 and fail to start there.
#   scripts/build-worker.sh [--release]   (default: the `worker` profile of Cargo.toml, for tests)
# Prints the binary's path on stdout; `coffer publish --binary PATH` checks and uploads it.
# Needs the toolchain scripts/install-tools.sh installs (.venv-zig/, .tools/cargo-zigbuild-*).
# Its own target directory keeps it from invalidating the host build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.26
profile=worker
args=(--profile worker)
case "${1:-}" in
    --release) profile=release; args=(--release) ;;
    "") ;;
    *) echo "build-worker: unknown argument $1 (allowed: --release)" >&2; exit 2 ;;
esac

zigbuild="$(ls -d "$ROOT"/.tools/cargo-zigbuild-*/bin/cargo-zigbuild 2>/dev/null | tail -n 1)"
if [ -z "$zigbuild" ] || [ ! -x "$ROOT/.venv-zig/bin/python" ]; then
    echo "build-worker: no zig toolchain; run scripts/install-tools.sh first" >&2
    exit 1
fi

# cargo-zigbuild runs `python -m ziglang` from this interpreter: the pinned zig, not one on PATH.
export CARGO_ZIGBUILD_PYTHON_PATH="$ROOT/.venv-zig/bin/python"
export CARGO_TARGET_DIR="$ROOT/target/worker"
"$zigbuild" zigbuild --locked --quiet "${args[@]}" --target "$TRIPLE.$GLIBC" -p coffer-provider --bin coffer >&2
echo "$CARGO_TARGET_DIR/$TRIPLE/$profile/coffer"
