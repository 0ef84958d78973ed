# Shared by build_offline_base.sh and check_container.sh (sourced, POSIX sh): choose a container engine.
#   . docker/engine.sh; pick_engine CONF_DIR    -> sets ENGINE (podman or docker)
# podman is preferred (it needs no daemon); docker counts only when its daemon answers. For podman,
# unless CONTAINERS_CONF is already set, a conservative containers.conf is written to CONF_DIR and
# exported: cgroupfs instead of systemd, no default ulimits, and runc when it is installed. Inside
# nested sandboxes (this project's build machines) crun, the systemd cgroup manager and the default
# ulimits are refused; on an ordinary host these settings change nothing that matters here.
# Not part of the submission image: nothing in the image sources this file.

pick_engine() {
    _conf_dir=$1
    ENGINE=""
    if [ -n "${MOOD_ENGINE:-}" ]; then
        ENGINE=$MOOD_ENGINE
    elif command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        echo "error: no container engine: install podman (apt-get install podman runc uidmap) or start docker" >&2
        return 2
    fi
    if [ "$ENGINE" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
        mkdir -p "$_conf_dir"
        {
            echo '[containers]'
            echo 'default_ulimits = []'
            echo '[engine]'
            echo 'cgroup_manager = "cgroupfs"'
            if command -v runc >/dev/null 2>&1; then echo 'runtime = "runc"'; fi
        } > "$_conf_dir/containers.conf"
        CONTAINERS_CONF=$_conf_dir/containers.conf
        export CONTAINERS_CONF
    fi
    if ! "$ENGINE" info >/dev/null 2>&1; then
        echo "error: '$ENGINE info' fails; the container engine is not usable here" >&2
        return 2
    fi
    return 0
}
