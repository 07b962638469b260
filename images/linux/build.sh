#!/usr/bin/env bash
# Build the spicebox Linux test guest kernel: Debian's linux-source-6.1,
# tinyconfig + config.fragment, the host-quirk patches in patches/.
# Usage: images/linux/build.sh OUT_DIR   (writes OUT_DIR/vmlinux, OUT_DIR/config)
# Called by images::linux_guest (which caches OUT_DIR by a hash of its inputs);
# the packages come from scripts/deps test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
tarball=/usr/src/linux-source-6.1.tar.xz
[ -r "$tarball" ] || { echo "$tarball missing: run scripts/deps test (linux-source-6.1)" >&2; exit 1; }

work="$out.work"
rm -rf "$work"
mkdir -p "$work"
start=$(date +%s)
# The documentation (but its Kconfig) stays packed; Kconfig sources files
# from every other tree (even arch/arm/crypto), so the rest is unpacked.
tar -C "$work" -xf "$tarball" --strip-components=1 --exclude='*/Documentation/[!K]*'
for p in "$here"/patches/*.patch; do
  patch -d "$work" -p1 --quiet --forward < "$p"
done
unpacked=$(date +%s)

cd "$work"
make -s ARCH=x86_64 tinyconfig
scripts/kconfig/merge_config.sh -m .config "$here/config.fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig
# Every =y line of the fragment must have survived (a missing dependency
# would silently drop a driver).
missing=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=y) grep -qx "$line" .config || { echo "config: $line did not stick" >&2; missing=1; } ;;
  esac
done < "$here/config.fragment"
[ "$missing" = 0 ] || exit 1
make -s ARCH=x86_64 -j"$(nproc)" vmlinux
built=$(date +%s)

cp vmlinux "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp .config "$out/config"
echo "unpack+patch $((unpacked - start)) s, config+build $((built - unpacked)) s" | tee "$out/build-time"
cd / && rm -rf "$work"
