#!/usr/bin/env bash
# The test command (README "Testing"): installs what the tests need on a fresh
# Debian 12 machine (as root), then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v ssh-keygen >/dev/null || need_pkgs+=(openssh-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
command -v pkill >/dev/null || need_pkgs+=(procps)
command -v socat >/dev/null || need_pkgs+=(socat)
command -v objcopy >/dev/null || need_pkgs+=(binutils)
# The Debian package checks (packaging/check-deb.sh).
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
command -v lintian >/dev/null || need_pkgs+=(lintian)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need_pkgs[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "== installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The package's own sshd service is not started here (no systemd in CI);
  # the tests start their own sshd on loopback.
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (includes the real-ZFS lab: tests/lab.rs boots two qemu nodes)"
cargo test --locked --all-targets

echo "== Debian package (cargo deb), its contents, lintian, a scratch-root install, systemd-analyze verify"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
deb=$(packaging/build-deb.sh)
packaging/check-deb.sh "$deb"

# The lab's watchdog stops the nodes once the test process is gone; make sure
# it did: no test run may leave a qemu behind.
for _ in $(seq 1 30); do
  pgrep -f '[q]emu-system.*lab/run-test-' >/dev/null || break
  sleep 0.5
done
if pgrep -af '[q]emu-system.*lab/run-test-'; then
  echo "qemu processes of the lab are still running after the tests" >&2
  exit 1
fi
