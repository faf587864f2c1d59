# Shell helpers shared by the scripts in scripts/. Source it; do not run it.
#
# Every script prints one line per action it takes, prefixed with its own
# name, and stops with one clear line on stderr when something is wrong.

# The repository root, whatever the current directory is.
CW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CW_SCRIPT="$(basename "$0")"

say() {
    printf '%s: %s\n' "$CW_SCRIPT" "$*"
}

die() {
    printf '%s: ERROR: %s\n' "$CW_SCRIPT" "$*" >&2
    exit 1
}

have() {
    command -v "$1" >/dev/null 2>&1
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# True when systemd is the init system (PID 1), so services are managed by it.
systemd_is_init() {
    [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ]
}

# wait_until SECONDS COMMAND...: run COMMAND every second until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 1
    done
}

# The venv's Python; the scripts never use a Python outside the project venv.
venv_python() {
    printf '%s\n' "$CW_ROOT/.venv/bin/python"
}
