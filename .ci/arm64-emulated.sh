#!/usr/bin/env bash
# The whole tool on 64-bit ARM, emulated: a Debian bookworm arm64 userland run through qemu-user-static, made to look
# like a Raspberry Pi 4, with w2vprof installed as the README's Raspberry Pi section says. It runs doctor, summary,
# profile (fp32, mixed), a tiny sweep (its child processes included), report, the sweep's kill test and the unit
# loop; it compares every FLOP and byte with x86's, prints each step's wall time, and ends non-zero on any
# difference or failure. When to run it, and why it is not in .ci/run: README, Development.
#
#   sudo .ci/arm64-emulated.sh            # Linux, root (binfmt_misc, chroot, mounts); about 15-40 min, see README
#   sudo .ci/arm64-emulated.sh --fresh    # a new virtual environment too (the userland is always kept)
#   sudo .ci/arm64-emulated.sh --update-reports   # then, where every step passed, copy the sweep, its report, the
#                                                 # summary and the checks into reports/arm64-emulated/
#
# W2VPROF_ARM64_ROOT   cache folder, outside the repository (default /var/cache/w2vprof-arm64): rootfs/ is the
#                      userland (built once with debootstrap, about 300 MB, plus about 1.5 GB of virtual environment)
# W2VPROF_ARM64_OUT    where this run's outputs are copied (default $W2VPROF_ARM64_ROOT/last-run)
# W2VPROF_ARM64_MIRROR Debian mirror for debootstrap (default http://deb.debian.org/debian)
#
# The one difference from the README's Raspberry Pi install: torch and torchaudio come from PyPI, not from PyTorch's
# CPU index (download.pytorch.org cannot be reached from the development machines). PyPI's aarch64 torch is a CPU-only
# build up to 2.10.0 (its nvidia-* and triton requirements are all marked platform_machine == "x86_64"); from 2.11.0
# on, PyPI's aarch64 wheels are CUDA 13 builds (420+ MB, requiring cuda-toolkit and nvidia-cudnn-cu13 on every
# Linux), so 2.10.0 is the newest CPU-only one there. The install step checks that no CUDA package came with it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${W2VPROF_ARM64_ROOT:-/var/cache/w2vprof-arm64}
ROOTFS=$CACHE/rootfs
OUT=${W2VPROF_ARM64_OUT:-$CACHE/last-run}
MIRROR=${W2VPROF_ARM64_MIRROR:-http://deb.debian.org/debian}
TORCH=2.10.0
TORCHAUDIO=2.10.0
PI4=$REPO/tests/fixtures/raspberry-pi-4     # a Pi 4's /proc/cpuinfo and device tree (model, compatible)
X86_REFERENCE=reports/arm64-emulated/x86-reference/results.csv
FRESH=0
UPDATE_REPORTS=0
for arg in "$@"; do
  case $arg in
    --fresh) FRESH=1 ;;
    --update-reports) UPDATE_REPORTS=1 ;;
    *) echo "usage: $0 [--fresh] [--update-reports]" >&2; exit 2 ;;
  esac
done

SUMMARY=()
FAILED=()
say() { printf '\n=== %s\n' "$*"; }

# step NAME COMMAND...: runs it, records its wall time and whether it passed (the run goes on either way).
step() {
  local name=$1 start end status=ok
  shift
  say "$name"
  start=$(date +%s.%N)
  "$@" || status=FAILED
  [ -d "$ROOTFS/proc" ] && stop_leftovers
  end=$(date +%s.%N)
  SUMMARY+=("$(printf '%-34s %8.1f s  %s' "$name" "$(echo "$end - $start" | bc)" "$status")")
  [ "$status" = ok ] || FAILED+=("$name")
}

# must NAME COMMAND...: a step the rest cannot do without: stop here if it fails.
must() {
  step "$@"
  if [ ${#FAILED[@]} -gt 0 ]; then
    finish
  fi
}

finish() {
  say "summary (outputs: $OUT)"
  [ -f "$ROOTFS/root/w2vprof-out/torch-version.txt" ] && echo "torch: $(cat "$ROOTFS/root/w2vprof-out/torch-version.txt")"
  [ -f "$ROOTFS/root/w2vprof-out/checks.txt" ] && cat "$ROOTFS/root/w2vprof-out/checks.txt"
  printf '%s\n' "${SUMMARY[@]}"
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
  fi
  echo "all steps passed"
  if [ "$UPDATE_REPORTS" = 1 ]; then
    # only what names itself emulated (the sweep ran as plain qemu); not the Pi-look profiles, whose rows name a Pi 4
    local reports=$REPO/reports/arm64-emulated
    rm -rf "$reports/sweep" && cp -a "$OUT/sweep" "$OUT/summary-base.csv" "$OUT/checks.txt" "$reports/"
    printf '%s\n' "${SUMMARY[@]}" > "$reports/step-times.txt"
    echo "updated $reports"
  fi
  exit 0
}

# in_userland 'COMMANDS': bash in the arm64 userland, in a private mount namespace (every mount below goes away with
# it). With PI_LOOK=1, a Pi 4's /proc/cpuinfo is bind-mounted over the kernel's (under qemu-user it is the x86
# host's) and its device tree appears under /sys/firmware/devicetree/base (procfs has no /proc/device-tree to bind
# over on an x86 kernel; w2vprof reads either place, as a container with only /sys does).
in_userland() {
  unshare --mount --propagation private -- bash -euo pipefail -c '
    root=$1 pi=$2 pi_look=$3
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"   # its own: semaphores and shared memory of the sweep
    if [ "$pi_look" = 1 ]; then
      mount --bind "$pi/proc/cpuinfo" "$root/proc/cpuinfo"
      mount -t tmpfs tmpfs "$root/sys/firmware"
      mkdir -p "$root/sys/firmware/devicetree/base"
      cp "$pi/proc/device-tree/model" "$pi/proc/device-tree/compatible" "$root/sys/firmware/devicetree/base/"
    fi
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb COLUMNS=120 \
      PATH=/root/w2vprof-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 W2VPROF_CHECKS=/root/w2vprof-out/checks.txt \
      PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
      /bin/bash -euo pipefail -c "cd /root && $4"
  ' _ "$ROOTFS" "$PI4" "${PI_LOOK:-0}" "$1"
}

# -- the host: tools and binfmt_misc ---------------------------------------------------------------------------------
host_tools() {
  [ "$(id -u)" = 0 ] || { echo "run as root (binfmt_misc, debootstrap, chroot and mounts need it)" >&2; return 1; }
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v bc >/dev/null || missing+=(bc)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  [ "$(uname -m)" = aarch64 ] && return 0   # a real arm64 machine: nothing to emulate
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
  # F (fix binary): the kernel opened the interpreter when it was registered, so it works inside the chroot
  grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || cp /usr/bin/qemu-aarch64-static "$ROOTFS/usr/bin/" 2>/dev/null || true
  echo "qemu: $(qemu-aarch64-static --version | head -1); binfmt_misc qemu-aarch64 $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64)"
}

# -- the userland: Debian bookworm arm64, built once ----------------------------------------------------------------
userland() {
  if [ -f "$ROOTFS/.w2vprof-userland" ]; then
    echo "cached: $ROOTFS ($(cat "$ROOTFS/.w2vprof-userland"))"
  else
    rm -rf "$CACHE/rootfs.partial"
    mkdir -p "$CACHE"
    if [ -d "$ROOTFS" ]; then
      mv "$ROOTFS" "$CACHE/rootfs.partial"   # a finished debootstrap whose packages step did not finish
    else
      debootstrap --arch=arm64 --variant=minbase --include=ca-certificates bookworm "$CACHE/rootfs.partial" "$MIRROR"
    fi
    mv "$CACHE/rootfs.partial" "$ROOTFS"
    # the README's first line (apt as root: no sudo in the userland), once: the userland keeps it
    in_userland "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv libsndfile1"
    echo "debian bookworm arm64 $(date -u +%Y-%m-%dT%H:%MZ)" > "$ROOTFS/.w2vprof-userland"
  fi
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  # pip in the userland trusts what this host trusts (PIP_CERT, in_userland): a TLS-inspecting proxy's CA too
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/host-ca-certificates.crt" 2>/dev/null ||
    cp "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$ROOTFS/etc/ssl/certs/host-ca-certificates.crt"
  [ "$(in_userland 'uname -m')" = aarch64 ]
  in_userland 'python3 --version'
}

# PI_LOOK=1 where this kernel lets a Pi's files be mounted over /proc/cpuinfo and /sys/firmware
pi_look() {
  PI_LOOK=1
  if ! in_userland 'true' 2>/dev/null; then
    PI_LOOK=0
    echo "this kernel does not allow the Raspberry Pi 4 look (bind mounts over /proc/cpuinfo, /sys/firmware):" \
      "doctor's board is not checked; platform still must agree with the machine type"
  else
    in_userland 'head -c 40 /sys/firmware/devicetree/base/model; echo; grep -m1 "CPU part" /proc/cpuinfo'
  fi
}

# -- w2vprof's source, and its install ------------------------------------------------------------------------------
copy_source() {
  # the working tree as git sees it (tracked and new files, nothing ignored): what a clone with these changes holds
  rm -rf "$ROOTFS/root/w2vprof" "$ROOTFS/root/w2vprof-out"
  mkdir -p "$ROOTFS/root/w2vprof" "$ROOTFS/root/w2vprof-out"
  git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    tar -C "$REPO" --null --ignore-failed-read -T - -cf - | tar -C "$ROOTFS/root/w2vprof" -xf -
  echo "$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD || echo ' + uncommitted changes')" \
    > "$ROOTFS/root/w2vprof-out/source.txt"
  echo "copied $(find "$ROOTFS/root/w2vprof" -type f | wc -l) files of $(cat "$ROOTFS/root/w2vprof-out/source.txt")"
}

install() {
  # README, Raspberry Pi: venv, torch first, pin it, then w2vprof with the pin (torch from PyPI: see the header)
  local venv_key="torch==$TORCH torchaudio==$TORCHAUDIO"
  if [ "$FRESH" = 1 ] || [ "$(cat "$ROOTFS/root/w2vprof-venv/.w2vprof-torch" 2>/dev/null)" != "$venv_key" ]; then
    in_userland "rm -rf ~/w2vprof-venv && python3 -m venv ~/w2vprof-venv
      ~/w2vprof-venv/bin/pip install -q --upgrade pip
      ~/w2vprof-venv/bin/pip install -q torch==$TORCH torchaudio==$TORCHAUDIO
      echo '$venv_key' > ~/w2vprof-venv/.w2vprof-torch"
  else
    echo "kept ~/w2vprof-venv (torch $TORCH installed by an earlier run; --fresh makes a new one)"
  fi
  in_userland "cd w2vprof
    ~/w2vprof-venv/bin/pip freeze | grep -iE '^(torch|torchaudio)==' > constraints.txt
    cat constraints.txt
    ~/w2vprof-venv/bin/pip install -q -c constraints.txt .
    ~/w2vprof-venv/bin/python -c 'import torch; print(torch.__version__, \"cuda:\", torch.version.cuda)' \
      | tee ~/w2vprof-out/torch-version.txt
    # nvidia-ml-py is w2vprof's own (NVML bindings, pure Python); anything else nvidia-*, cuda-* or triton is CUDA's
    if ~/w2vprof-venv/bin/pip list 2>/dev/null | grep -iE '^(nvidia-|cuda-|triton)' | grep -viE '^nvidia-ml-py '; then
      echo 'a CUDA package came with this torch (not a CPU-only build)'; exit 1
    fi
    grep -q 'cuda: None' ~/w2vprof-out/torch-version.txt"
}

install_test_extra() {
  # the unit loop needs pytest & co. (README, Development: the test extra), pinned to the same torch
  in_userland "cd w2vprof && ~/w2vprof-venv/bin/pip install -q -c constraints.txt '.[test]'"
}

# -- the checks ------------------------------------------------------------------------------------------------------
doctor() {
  # as a Pi 4 (where the kernel allows): the board named; platform raspberrypi
  in_userland "cd ~/w2vprof-out && w2vprof doctor | tee doctor.txt && w2vprof doctor --format json > doctor.json
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py doctor doctor.json $PI_LOOK"
}

doctor_plain() {
  # plain qemu-user: /proc/cpuinfo is the x86 host's; platform must still be linux, the CPU marked emulated
  PI_LOOK=0 in_userland "cd ~/w2vprof-out && w2vprof doctor --format json > doctor-plain.json
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py doctor doctor-plain.json 0"
}

summary_base() {
  in_userland "cd ~/w2vprof-out && w2vprof summary --model base --format csv --out summary-base.csv
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py summary summary-base.csv \
      ~/w2vprof/tests/golden/numbers/summary_base_5.5.csv"
}

profile() {
  local precision=$1
  in_userland "cd ~/w2vprof-out && w2vprof profile --model tiny --batch 2 --seconds 1 --repeats 2 \
      --precision $precision --out profile-$precision
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py rows profile-$precision/results.csv \
      ~/w2vprof/$X86_REFERENCE ~/w2vprof/tests/golden/numbers/profile_tiny_b2_1s.json"
}

sweep() {
  # Plain qemu-user, not the Pi look: its rows (committed under reports/arm64-emulated/) then name their device
  # 'aarch64 (/proc/cpuinfo describes another architecture (x86): emulation?)', never a Raspberry Pi 4 whose
  # seconds they are not. A fresh calibration cache: the sweep calibrates this machine within its budget.
  # A configuration child forked under qemu-user 7.2 sometimes hangs in qemu's own lock before running a line
  # (0 s of CPU; seen once in four runs): the sweep's --timeout records it as `timeout`, and w2vprof's own resume
  # re-runs that row, up to twice. The rows check below still fails on a row that never finished.
  PI_LOOK=0 in_userland "rm -rf ~/.cache/w2vprof && mkdir -p ~/w2vprof-out/sweep && cd ~/w2vprof-out
    grid='--model tiny --seconds 1 --batch 1,2 --precision fp32,mixed --repeats 2 --timeout 300'
    w2vprof sweep \$grid --out sweep/results.csv
    for retry in 1 2; do
      grep -q ',timeout,' sweep/results.csv || break
      echo \"a configuration timed out (qemu-user's fork hang): w2vprof sweep --resume --retry timeout, try \$retry\"
      w2vprof sweep \$grid --out sweep/results.csv --resume --retry timeout
    done
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py rows sweep/results.csv \
      ~/w2vprof/$X86_REFERENCE ~/w2vprof/tests/golden/numbers/profile_tiny_b2_1s.json
    ~/w2vprof-venv/bin/python ~/w2vprof/.ci/arm64_checks.py calibration ~/.cache/w2vprof"
}

report() {
  in_userland "cd ~/w2vprof-out && w2vprof report sweep/results.csv --out sweep/report && ls sweep/report"
}

kill_test() {
  # The integration test emulation failed before the child asked for its parent-death signal first thing. A child
  # forked under qemu-user 7.2 now and then waits forever on a lock of qemu's own (a futex in qemu's memory, beside
  # its RCU thread's, not in the guest's: 2 of 4 runs of this test hung so), so a run that hangs (timeout's 124;
  # it passes in 80-150 s) is tried again, up to 3 times; a failing assertion is not.
  local attempt status
  for attempt in 1 2 3; do
    status=0
    in_userland "cd w2vprof && timeout 420 ~/w2vprof-venv/bin/python -m pytest -q -p no:cacheprovider \
      'tests/test_sweep.py::test_a_template_killed_mid_run_costs_that_configuration_only' \
      'tests/test_sweep.py::test_a_child_whose_template_dies_before_it_starts_does_not_outlive_it'" || status=$?
    stop_leftovers
    [ "$status" = 124 ] || return "$status"
    echo "attempt $attempt hung for 420 s (qemu-user's lock after a fork): again"
  done
  return 1
}

# stop_leftovers: SIGKILL whatever still runs in the userland (its root is $ROOTFS: only this script's processes),
# e.g. a child stuck in qemu's lock after a timeout; each step starts with nothing of the last one running.
stop_leftovers() {
  local proc
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOTFS" ]; then
      echo "stopping leftover ${proc#/proc/}: $(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null | cut -c1-100)"
      kill -9 "${proc#/proc/}" 2>/dev/null || true
    fi
  done
}

unit_loop() {
  in_userland "cd w2vprof && status=0
    ~/w2vprof-venv/bin/python -m pytest -q -p no:cacheprovider -m 'not integration' > ~/w2vprof-out/unit-loop.txt \
      2>&1 || status=\$?
    tail -15 ~/w2vprof-out/unit-loop.txt
    echo \"unit loop: \$(tail -1 ~/w2vprof-out/unit-loop.txt)\" >> ~/w2vprof-out/checks.txt
    exit \$status"
}

must "host tools, binfmt_misc" host_tools
must "userland (debootstrap, cached)" userland
step "Raspberry Pi 4 look" pi_look
must "copy the source" copy_source
must "install (README, Raspberry Pi)" install
must "install the test extra" install_test_extra
step "w2vprof doctor (as a Pi 4)" doctor
step "w2vprof doctor (plain qemu)" doctor_plain
step "summary --model base" summary_base
step "profile tiny fp32" profile fp32
step "profile tiny mixed" profile mixed
step "sweep tiny (4 children, plain)" sweep
step "report" report
step "sweep kill tests" kill_test
step "unit loop (not integration)" unit_loop
rm -rf "$OUT" && mkdir -p "$OUT" && cp -a "$ROOTFS/root/w2vprof-out/." "$OUT/"
finish
