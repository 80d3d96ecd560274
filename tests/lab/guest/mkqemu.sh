#!/bin/bash
# Runs INSIDE the lab build chroot (called by tests/lab/build.sh).
# usage: mkqemu.sh OUTDIR
# Copies the chroot's Debian 12 qemu-system-x86_64 with every library it needs
# (including glibc and the dynamic loader) and its firmware files into OUTDIR,
# plus a wrapper OUTDIR/qemu-system-x86_64 that runs it on the host through the
# bundled loader. The host's own qemu packages are never touched.
set -euo pipefail
Q=$1
rm -rf "$Q"
mkdir -p "$Q/bin" "$Q/lib" "$Q/share" "$Q/modules"

copy_libs() {
    local lib
    for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [[ -e "$Q/lib/$(basename "$lib")" ]] || cp -L "$lib" "$Q/lib/"
    done
}
cp -L /usr/bin/qemu-system-x86_64 "$Q/bin/"
copy_libs /usr/bin/qemu-system-x86_64
# Loadable qemu modules: only the TCG accelerator ones (no GUI/audio/block).
for m in /usr/lib/x86_64-linux-gnu/qemu/accel-*.so; do
    [[ -e "$m" ]] || continue
    cp -L "$m" "$Q/modules/"
    copy_libs "$m"
done
# Firmware/option ROMs (many are symlinks into seabios/ipxe; skip dangling ones).
# Debian's qemu also looks in /usr/share/seabios and /usr/lib/ipxe/qemu
# (--firmwarepath); -L replaces all of them, so merge them into share/.
for f in /usr/share/seabios/* /usr/lib/ipxe/qemu/* /usr/share/qemu/*; do
    [[ -e "$f" ]] || continue
    cp -rLf "$f" "$Q/share/"
done
# the loader must be callable as lib/ld-linux-x86-64.so.2
[[ -e "$Q/lib/ld-linux-x86-64.so.2" ]] || cp -L /lib64/ld-linux-x86-64.so.2 "$Q/lib/"

cat >"$Q/qemu-system-x86_64" <<'EOF'
#!/bin/sh
# Bundled Debian 12 qemu-system-x86_64 (built by tests/lab/build.sh).
d=$(dirname "$(readlink -f "$0")")
export QEMU_MODULE_DIR="$d/modules"
exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" "$d/bin/qemu-system-x86_64" -L "$d/share" "$@"
EOF
chmod 755 "$Q/qemu-system-x86_64"
echo "mkqemu: $(du -sh "$Q" | cut -f1) bundle, $(ls "$Q/lib" | wc -l) libraries" >&2
