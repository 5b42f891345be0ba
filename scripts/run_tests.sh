#!/usr/bin/env bash
# Runs the pytest session (arguments are passed to pytest) so that no DDS traffic can leave the
# machine: inside a fresh network namespace (`unshare -n`, only `lo`, brought up) when the kernel
# allows it, otherwise directly with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the loopback-only
# Fast DDS profile. test/conftest.py refuses to start ROS tests when neither holds.
# Exit code 5 from pytest ("no tests collected") is turned into a failure: CI must not pass empty.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv=${VENV:-.venv}
venv_abs=$(cd "$venv" 2>/dev/null && pwd) || { echo "run_tests: no venv at $venv (run make setup)" >&2; exit 2; }
py="$venv_abs/bin/python"

export AMENT_PREFIX_PATH="$venv_abs"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$repo/config/fastdds_shm.xml"
export PYTHONUNBUFFERED=1

if unshare -n true 2>/dev/null && unshare -n sh -c 'ip link set lo up' 2>/dev/null; then
  echo "run_tests: isolated network namespace (unshare -n, lo only)"
  # "$0" inside sh -c is the python path, the rest are pytest's arguments.
  unshare -n sh -c 'ip link set lo up && exec "$0" -m pytest "$@"' "$py" "$@"
  rc=$?
else
  echo "run_tests: unshare -n not permitted; fallback: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST + loopback Fast DDS profile"
  "$py" -m pytest "$@"
  rc=$?
fi

if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
