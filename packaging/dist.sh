#!/usr/bin/env bash
# Packs a built spanblame binary for distribution into OUT_DIR:
#   spanblame_<version>_<arch>.deb          the Debian package (dpkg-deb from a staged tree)
#   spanblame-<version>-<machine>-linux.tar.gz   the stripped binary and the packaging files
#   spanblame-<version>-<machine>-linux.debug    its debug info (gdb finds it by debuglink)
#   SHA256SUMS                                   for `sha256sum -c`
# `cargo xtask dist` builds the release binary and runs this; the package test
# (crates/spanblame/tests/it/packaging.rs) runs it on the binary under test.
# Needs binutils (objcopy, objdump) and dpkg-deb. Usage: packaging/dist.sh BINARY OUT_DIR
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 BINARY OUT_DIR" >&2
    exit 2
fi
binary=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
version=$("$binary" --version | awk '{ print $2 }')
arch=$(dpkg --print-architecture)
machine=$(uname -m)
name="spanblame-${version}-${machine}-linux"
# Reproducible archives: every timestamp is the last commit's, when there is one.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# The binary without debug info or symbols, pointing at its debug file by name and CRC.
objcopy --only-keep-debug "$binary" "$work/$name.debug"
objcopy --strip-all --add-gnu-debuglink="$work/$name.debug" "$binary" "$work/spanblame"
chmod 755 "$work/spanblame"
chmod 644 "$work/$name.debug"

# The tarball: the binary and what a host install uses beside it.
tree="$work/$name"
install -D -m 755 "$work/spanblame" "$tree/spanblame"
install -m 644 "$here/spanblame.service" "$here/spanblame.toml" "$tree/"
install -m 600 "$here/spanblame.env" "$tree/"
install -m 644 "$root/README.md" "$root/CHANGELOG.md" "$root/docs/configuration.md" "$tree/"
install -D -m 644 "$root/docs/alerts.yml" "$root/docs/grafana-dashboard.json" -t "$tree/monitoring"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "$work" -cf - "$name" \
    | gzip -n -9 > "$out/$name.tar.gz"
cp "$work/$name.debug" "$out/$name.debug"

# The Debian package, staged as it will be installed.
deb="$work/deb"
install -D -m 755 "$work/spanblame" "$deb/usr/bin/spanblame"
install -D -m 644 "$here/spanblame.service" "$deb/usr/lib/systemd/system/spanblame.service"
install -D -m 644 "$here/spanblame.toml" "$deb/etc/spanblame/spanblame.toml"
install -D -m 600 "$here/spanblame.env" "$deb/etc/spanblame/spanblame.env"
install -D -m 644 "$root/README.md" "$root/CHANGELOG.md" "$root/docs/configuration.md" \
    -t "$deb/usr/share/doc/spanblame"
install -D -m 644 "$root/docs/alerts.yml" "$root/docs/grafana-dashboard.json" \
    -t "$deb/usr/share/doc/spanblame/examples"
cat > "$deb/usr/share/doc/spanblame/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: spanblame

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF

# Depends: the shared libraries the binary links, at the newest glibc symbol version it uses.
depends=()
for library in $(objdump -p "$binary" | awk '/NEEDED/ { print $2 }'); do
    case $library in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;;
        libgcc_s.so.1) depends+=("libgcc-s1") ;;
        *)
            echo "$0: $binary links $library, which has no Debian package mapped here; add it to dist.sh" >&2
            exit 1
            ;;
    esac
done
glibc=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
depends=("libc6 (>= $glibc)" "${depends[@]}")

mkdir -p "$deb/DEBIAN"
installed_kib=$(du -sk --exclude=DEBIAN "$deb" | awk '{ print $1 }')
cat > "$deb/DEBIAN/control" <<EOF
Package: spanblame
Version: ${version//-/\~}
Architecture: $arch
Maintainer: spanblame developers <spanblame@localhost>
Installed-Size: $installed_kib
Depends: $(IFS=,; echo "${depends[*]}" | sed 's/,/, /g'), passwd
Recommends: git
Section: net
Priority: optional
Description: git blame for latency: an OpenTelemetry trace store that knows which code runs
 spanblame stores OpenTelemetry traces, links every span to the service version, commit,
 review and author behind it, notices when a deploy makes latency or errors worse, names
 the suspect commits with evidence and drafts the rollback.
 .
 The service runs as the spanblame user with its data in /var/lib/spanblame; it is not
 started on install: edit /etc/spanblame/spanblame.toml, then
 systemctl enable --now spanblame.
EOF
printf '/etc/spanblame/spanblame.toml\n/etc/spanblame/spanblame.env\n' > "$deb/DEBIAN/conffiles"
install -m 755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$deb/DEBIAN/"
find "$deb" -exec touch -h -d "@$epoch" {} +
dpkg-deb --root-owner-group --build "$deb" "$out/spanblame_${version//-/\~}_${arch}.deb" >/dev/null

cd "$out"
sha256sum "spanblame_${version//-/\~}_${arch}.deb" "$name.tar.gz" "$name.debug" > SHA256SUMS
cat SHA256SUMS
