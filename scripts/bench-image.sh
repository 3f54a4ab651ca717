#!/usr/bin/env bash
# Builds the disk images for the image-level backup benchmark (Coffer vs restic):
#
#   <dir>/tree/               a real Debian OS tree (debootstrap --variant=minbase
#                             plus a few packages: python3, perl, git, gcc, make)
#   <dir>/disk.img            a sparse 2 GiB ext4 image populated from the tree
#                             without mounting (mkfs.ext4 -d), checked by e2fsck
#   <dir>/disk-changed.img    disk.img after a realistic, seeded ~1% change: a few
#                             new files written with debugfs (logs, a download)
#                             and some existing files patched in place (an
#                             "upgrade"); still a clean ext4 (e2fsck -fn)
#
# Usage: scripts/bench-image.sh [dir]        (dir defaults to target/bench-image)
#
# Idempotent: every stage is cached under <dir> behind a stamp that records its
# inputs, so a second run only prints the image facts. Delete <dir> (or one
# stamp) to rebuild. Needs root (debootstrap chroots; apt-get installs missing
# tools: debootstrap, e2fsprogs, restic).
#
# Knobs (environment): SUITE (default: the host's Debian codename, else
# bookworm), MIRROR (http://deb.debian.org/debian), INCLUDE (extra packages),
# IMAGE_SIZE (2G), CHANGE_SEED (1), CHANGE_PERMILLE (10 = 1% of the 512 KiB
# blocks of the image).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/target/bench-image}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

log() { echo "bench-image: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------- settings
host_suite=bookworm
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    host_id="$(. /etc/os-release && echo "${ID:-}")"
    host_codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    if [ "$host_id" = debian ] && [ -n "$host_codename" ]; then
        host_suite="$host_codename"
    fi
fi
SUITE="${SUITE:-$host_suite}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
INCLUDE="${INCLUDE:-python3,perl,git,gcc,make}"
IMAGE_SIZE="${IMAGE_SIZE:-2G}"
CHANGE_SEED="${CHANGE_SEED:-1}"
CHANGE_PERMILLE="${CHANGE_PERMILLE:-10}"
BLOCK=$((512 * 1024))
# Fixed UUID/hash seed/time so the image is a pure function of the tree.
FS_UUID=0b6c3a52-6b1e-4c6e-9f00-c0ffeec0ffee
export E2FSPROGS_FAKE_TIME=1700000000

TREE="$DIR/tree"
IMG="$DIR/disk.img"
CHANGED="$DIR/disk-changed.img"

# ---------------------------------------------------------------- tools
t0="$(now)"
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
{ command -v mkfs.ext4 >/dev/null 2>&1 && command -v e2fsck >/dev/null 2>&1 &&
  command -v debugfs >/dev/null 2>&1; } || missing+=(e2fsprogs)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
# mkfs -d (populate from a directory) needs e2fsprogs >= 1.43.
e2v="$(mke2fs -V 2>&1 | sed -n 's/^mke2fs \([0-9.]*\).*/\1/p')"
if [ "$(printf '%s\n1.43\n' "$e2v" | sort -V | head -n1)" != 1.43 ]; then
    log "mke2fs $e2v is too old for -d (need >= 1.43)"
    exit 1
fi
log "tools ready ($(since "$t0")): debootstrap, mke2fs $e2v, $(restic version | cut -d' ' -f1-2)"

# ---------------------------------------------------------------- OS tree
# Unmounts anything a failed debootstrap left mounted inside the tree (proc,
# sys, ...) so the tree can be removed safely.
umount_tree() {
    local m
    awk -v t="$TREE/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

tree_cfg="suite=$SUITE mirror=$MIRROR variant=minbase include=$INCLUDE"
if [ -f "$DIR/tree.stamp" ] && [ "$(cat "$DIR/tree.stamp")" = "$tree_cfg" ]; then
    log "OS tree cached: $TREE ($tree_cfg)"
else
    t0="$(now)"
    rm -f "$DIR/tree.stamp" "$DIR/disk.stamp" "$DIR/changed.stamp"
    umount_tree
    rm -rf "$TREE"
    log "debootstrap $tree_cfg"
    if debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$TREE" "$MIRROR" \
        >"$DIR/debootstrap.log" 2>&1; then
        log "debootstrap complete ($(since "$t0"))"
    else
        # A container may forbid what the second stage needs (mounting /proc,
        # mknod, chroot). The first stage alone still downloads and unpacks
        # every package: a real, if unconfigured, OS tree.
        log "debootstrap failed (see $DIR/debootstrap.log); falling back to --foreign (unpack only)"
        umount_tree
        rm -rf "$TREE"
        debootstrap --foreign --variant=minbase --include="$INCLUDE" "$SUITE" "$TREE" "$MIRROR" \
            >>"$DIR/debootstrap.log" 2>&1
        log "debootstrap --foreign complete ($(since "$t0"))"
        tree_cfg="$tree_cfg foreign"
    fi
    umount_tree
    echo "$tree_cfg" >"$DIR/tree.stamp"
fi
log "tree: $(du -sh "$TREE" | cut -f1), $(find "$TREE" -type f | wc -l) files"

# ---------------------------------------------------------------- disk.img
disk_cfg="$(cat "$DIR/tree.stamp") size=$IMAGE_SIZE uuid=$FS_UUID"
if [ -f "$IMG" ] && [ -f "$DIR/disk.stamp" ] && [ "$(cat "$DIR/disk.stamp")" = "$disk_cfg" ]; then
    log "disk.img cached"
else
    t0="$(now)"
    rm -f "$DIR/disk.stamp" "$DIR/changed.stamp" "$IMG" "$IMG.tmp"
    mkfs.ext4 -F -q -U "$FS_UUID" -E "hash_seed=$FS_UUID" -d "$TREE" "$IMG.tmp" "$IMAGE_SIZE" >/dev/null
    e2fsck -fn "$IMG.tmp" >"$DIR/e2fsck-disk.log" 2>&1 ||
        { cat "$DIR/e2fsck-disk.log" >&2; log "e2fsck failed on disk.img"; exit 1; }
    mv "$IMG.tmp" "$IMG"
    echo "$disk_cfg" >"$DIR/disk.stamp"
    log "disk.img built and e2fsck-clean ($(since "$t0"))"
fi

# ---------------------------------------------------------------- helpers
# blockstat.py count IMG           -> number of non-zero BLOCK-sized blocks
# blockstat.py diff A B            -> number of BLOCK-sized blocks that differ
cat >"$DIR/blockstat.py" <<'EOF'
import sys
BLOCK = 512 * 1024
ZERO = bytes(BLOCK)

def chunks(path):
    with open(path, "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                return
            yield b

def diff_blocks(a, b):
    """Indices of BLOCK-sized blocks that differ (a missing tail counts as zeros)."""
    out = []
    ia, ib = chunks(a), chunks(b)
    i = 0
    while True:
        x, y = next(ia, None), next(ib, None)
        if x is None and y is None:
            return out
        if (x or b"").ljust(BLOCK, b"\0") != (y or b"").ljust(BLOCK, b"\0"):
            out.append(i)
        i += 1

if __name__ == "__main__":
    if sys.argv[1] == "count":
        total = nonzero = 0
        for b in chunks(sys.argv[2]):
            total += 1
            nonzero += b.strip(b"\0") != b""
        print(nonzero, total)
    elif sys.argv[1] == "diff":
        print(len(diff_blocks(sys.argv[2], sys.argv[3])))
EOF

# ---------------------------------------------------------------- disk-changed.img
# A realistic ~1% change, deterministic for a given tree and seed:
#  1. new files written into the filesystem with debugfs -w: a text log
#     (/var/log/bench/app.log, ~3 MiB) and an incompressible download
#     (/var/cache/bench/update.bin, 2 MiB) -- new data plus inode, bitmap,
#     directory and superblock updates;
#  2. an in-place "package upgrade": seeded random existing files under /usr
#     have a 64-byte span of every 4 KiB page rewritten, at the physical
#     blocks the extent tree gives for them (data only, so the filesystem
#     stays consistent), until the number of differing 512 KiB blocks of the
#     image reaches CHANGE_PERMILLE/1000 of all blocks.
cat >"$DIR/mkchanged.py" <<'EOF'
import os, random, re, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blockstat import BLOCK, diff_blocks

base, img, tree, seed, permille = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
work = img + ".work"
os.makedirs(work, exist_ok=True)
rng = random.Random(seed)
FIXED_TIME = 1700000000

def debugfs(cmds, write=False):
    path = os.path.join(work, "cmds")
    with open(path, "w") as f:
        f.write("\n".join(cmds) + "\n")
    args = ["debugfs"] + (["-w"] if write else []) + ["-f", path, img]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return r.stdout, r.stderr

# 1. new files
words = ("GET POST PUT DELETE /api/v1/items /api/v1/users /healthz /metrics "
         "200 201 204 304 400 404 500 ok slow retry cache-hit cache-miss").split()
lines, size, t = [], 0, FIXED_TIME
while size < 3 * 1024 * 1024:
    t += rng.randrange(1, 5)
    line = "%d host-%02d app[%d]: %s %s %s %dms req=%016x\n" % (
        t, rng.randrange(8), rng.randrange(1000, 9999), rng.choice(words[:4]),
        rng.choice(words[4:8]), rng.choice(words[8:14]), rng.randrange(1, 900),
        rng.getrandbits(64))
    lines.append(line)
    size += len(line)
new_files = {
    "/var/log/bench/app.log": "".join(lines).encode(),
    "/var/cache/bench/update.bin": rng.randbytes(2 * 1024 * 1024),
}
cmds = ["mkdir /var/log/bench", "mkdir /var/cache/bench"]
stamp = "20231114221320"  # FIXED_TIME, for every inode time debugfs sets
for i, (dst, data) in enumerate(sorted(new_files.items())):
    src = os.path.join(work, "new%d" % i)
    with open(src, "wb") as f:
        f.write(data)
    os.utime(src, (FIXED_TIME, FIXED_TIME))
    cmds.append("write %s %s" % (src, dst))
for p in ["/var/log/bench", "/var/cache/bench"] + sorted(new_files):
    for field in ("atime", "mtime", "ctime", "crtime"):
        cmds.append("sif %s %s %s" % (p, field, stamp))
out, err = debugfs(cmds, write=True)
for line in (out + err).splitlines():
    if re.search(r"(?i)error|not found|cannot|failed", line):
        sys.exit("debugfs: " + line)
new_bytes = sum(len(d) for d in new_files.values())

changed = set(diff_blocks(base, img))
after_new = len(changed)
total_blocks = (os.path.getsize(base) + BLOCK - 1) // BLOCK
target = (total_blocks * permille + 999) // 1000

# 2. in-place patches of existing files
bs = int(re.search(r"Block size:\s+(\d+)",
                   subprocess.run(["dumpe2fs", "-h", img], capture_output=True,
                                  text=True, check=True).stdout).group(1))
cands, seen = [], set()
for d, dirs, files in os.walk(os.path.join(tree, "usr")):
    dirs.sort()
    for name in sorted(files):
        p = os.path.join(d, name)
        st = os.lstat(p)
        if (not os.path.islink(p) and os.path.isfile(p) and st.st_ino not in seen
                and 64 * 1024 <= st.st_size <= 4 * 1024 * 1024):
            seen.add(st.st_ino)
            cands.append(("/" + os.path.relpath(p, tree), st.st_size))
rng.shuffle(cands)

extent_re = re.compile(r"^\s*(\d+)/\s*(\d+)\s+\d+/\s*\d+\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s*(.*)$")

def extents(paths):
    """{path: [(logical, physical, length)]} for files whose data extents are all initialised."""
    out, _ = debugfs(["ex " + p for p in paths])
    res, cur, bad = {}, None, False
    for line in out.splitlines():
        if line.startswith("debugfs: ex "):
            if cur and not bad:
                res[cur] = exts
            cur, exts, bad = line[len("debugfs: ex "):], [], False
            continue
        m = extent_re.match(line)
        if m and cur:
            lvl, depth = int(m.group(1)), int(m.group(2))
            if lvl == depth:  # leaf
                if m.group(8).strip():  # Uninit etc.
                    bad = True
                exts.append((int(m.group(3)), int(m.group(5)), int(m.group(7))))
    if cur and not bad:
        res[cur] = exts
    return res

patched, patched_bytes = [], 0
with open(img, "r+b") as f:
    i = 0
    while len(changed) < target and i < len(cands):
        batch = cands[i:i + 200]
        i += 200
        ext = extents([p for p, _ in batch])
        for path, size in batch:
            if len(changed) >= target:
                break
            exts = ext.get(path)
            nblocks = (size + bs - 1) // bs
            if not exts or sum(l for _, _, l in exts) != nblocks:
                continue  # holes, inline data or unwritten extents: skip
            touched = set()
            for lo, phys, length in exts:
                for k in range(length):
                    touched.add((phys + k) * bs // BLOCK)
            if len(changed | touched) > target:
                continue
            # rewrite a 64-byte span of every fs block of the file (within EOF)
            for lo, phys, length in exts:
                for k in range(length):
                    valid = min(bs, size - (lo + k) * bs)
                    n = min(64, valid)
                    off = rng.randrange(0, valid - n + 1)
                    f.seek((phys + k) * bs + off)
                    f.write(rng.randbytes(n))
            changed |= touched
            patched.append(path)
            patched_bytes += size

final = len(diff_blocks(base, img))
print("new files: %d (%.1f MiB) -> %d differing blocks (incl. metadata)"
      % (len(new_files), new_bytes / 2**20, after_new), file=sys.stderr)
print("patched in place: %d files (%.1f MiB), e.g. %s"
      % (len(patched), patched_bytes / 2**20, ", ".join(patched[:3])), file=sys.stderr)
print("target %d, differing 512 KiB blocks: %d of %d" % (target, final, total_blocks), file=sys.stderr)
for name in os.listdir(work):
    os.remove(os.path.join(work, name))
os.rmdir(work)
print(final)
EOF

changed_cfg="$(cat "$DIR/disk.stamp") seed=$CHANGE_SEED permille=$CHANGE_PERMILLE"
if [ -f "$CHANGED" ] && [ -f "$DIR/changed.stamp" ] &&
    [ "$(head -n1 "$DIR/changed.stamp")" = "$changed_cfg" ]; then
    log "disk-changed.img cached"
else
    t0="$(now)"
    rm -f "$DIR/changed.stamp" "$CHANGED" "$CHANGED.tmp"
    rm -rf "$CHANGED.tmp.work"
    cp --sparse=always "$IMG" "$CHANGED.tmp"
    ndiff="$(python3 "$DIR/mkchanged.py" "$IMG" "$CHANGED.tmp" "$TREE" "$CHANGE_SEED" "$CHANGE_PERMILLE")"
    e2fsck -fn "$CHANGED.tmp" >"$DIR/e2fsck-changed.log" 2>&1 ||
        { cat "$DIR/e2fsck-changed.log" >&2; log "e2fsck failed on disk-changed.img"; exit 1; }
    mv "$CHANGED.tmp" "$CHANGED"
    printf '%s\n%s\n' "$changed_cfg" "$ndiff" >"$DIR/changed.stamp"
    log "disk-changed.img built and e2fsck-clean ($(since "$t0"))"
fi

# ---------------------------------------------------------------- facts
t0="$(now)"
read -r nonzero total < <(python3 "$DIR/blockstat.py" count "$IMG")
ndiff="$(python3 "$DIR/blockstat.py" diff "$IMG" "$CHANGED")"
echo "dir:                $DIR"
echo "tree:               $(cat "$DIR/tree.stamp")"
for f in "$IMG" "$CHANGED"; do
    printf '%-19s apparent %s bytes, allocated %s KiB\n' "$(basename "$f"):" \
        "$(stat -c %s "$f")" "$(du -k "$f" | cut -f1)"
done
echo "disk.img blocks:    $nonzero of $total 512 KiB blocks non-zero"
echo "changed blocks:     $ndiff of $total 512 KiB blocks differ between disk.img and disk-changed.img"
log "facts computed ($(since "$t0"))"
