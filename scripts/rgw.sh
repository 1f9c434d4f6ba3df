#!/usr/bin/env bash
# A single-node Ceph RADOS Gateway (RGW) on loopback: a real S3 server (SigV4 verified, real multipart, MD5 ETags)
# for the storage tests and the storage bench. Debian's packages, no systemd, no mgr: one mon, one OSD, one radosgw,
# each in the foreground under this script's control, everything in one temporary folder.
#
#   scripts/rgw.sh start   installs the packages when missing, starts the cluster, makes a user, prints its env
#   scripts/rgw.sh stop    stops the daemons by PID and removes the folder
#   scripts/rgw.sh env     prints the env of the running lane (exit 1 when none runs)
#
# RGW_DIR (default /tmp/astrago-rgw-$UID) is the folder; the tests and the bench find the lane through its `env`
# file. RGW_STORE=memstore (default: objects in the OSD's memory, for the tests) or bluestore (a sparse file beside
# the OSD folder, memory held near osd_memory_target: for the 1 GiB bench, where memstore grows to ~9 GB).
# http on RGW_HTTP_PORT, https (a CA and certificate made here) on RGW_HTTPS_PORT; free ports are picked if unset.
set -euo pipefail

DIR="${RGW_DIR:-${TMPDIR:-/tmp}/astrago-rgw-$(id -u)}"
STORE="${RGW_STORE:-memstore}"
ENV_FILE="$DIR/env"
BUCKET="${RGW_BUCKET:-test}"

log() { echo "rgw: $*" >&2; }
die() {
  log "$*"
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_packages() {
  local need=()
  for cmd in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw radosgw-admin:radosgw monmaptool:ceph-base \
    ceph:ceph-common; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd#*:}")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${need[*]} (Debian's Ceph 16.2; about 46 s cold)"
  export DEBIAN_FRONTEND=noninteractive
  # Other jobs on the machine may hold apt's lock: wait for it rather than fail.
  $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends ceph-mon ceph-osd radosgw \
    ceph-common >/dev/null ||
    {
      $sudo apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
      $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends ceph-mon ceph-osd radosgw \
        ceph-common >/dev/null
    }
}

# The PIDs this script started, in the order they are stopped.
DAEMONS=(radosgw osd mon)

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

stop() {
  [ -d "$DIR" ] || return 0
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true; fi
  done
  for d in "${DAEMONS[@]}"; do
    for _ in $(seq 100); do alive "$d" || break; sleep 0.1; done
    if alive "$d"; then kill -9 "$(cat "$DIR/$d.pid")" 2>/dev/null || true; fi
  done
  rm -rf "$DIR"
}

# Runs a daemon in the foreground (-f) in the background of this shell, detached from the caller's stdio.
spawn() {
  local name=$1
  shift
  setsid "$@" -f >"$DIR/log/$name.out" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up: see $DIR/log/"
}

make_cert() {
  local tls="$DIR/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=astrago test CA" -keyout "$tls/ca.key" \
    -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr" \
    2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
}

start() {
  if [ -f "$ENV_FILE" ] && alive radosgw; then
    cat "$ENV_FILE"
    return 0
  fi
  stop
  install_packages
  mkdir -p "$DIR/log" "$DIR/run" "$DIR/mon" "$DIR/osd" "$DIR/rgw"
  local mon_port http_port https_port fsid uuid
  mon_port=$(free_port)
  http_port=${RGW_HTTP_PORT:-$(free_port)}
  https_port=${RGW_HTTPS_PORT:-$(free_port)}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  uuid=$(cat /proc/sys/kernel/random/uuid)
  make_cert

  local store_conf
  if [ "$STORE" = bluestore ]; then
    # The block file sits beside the OSD folder: named `block` inside it, mkfs loops on its own symlink.
    store_conf="osd objectstore = bluestore
bluestore block path = $DIR/osd-block
bluestore block size = ${RGW_BLOCK_BYTES:-21474836480}
bluestore block create = true
osd memory target = 536870912"
  else
    store_conf="osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-4294967296}"
  fi

  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
# radosgw asks for a "secure" mon session by default, which needs cephx: with auth none it would never connect.
ms mon client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# Without it the pools radosgw makes on its first start take ~18 s.
paxos propose interval = 0.01
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
$store_conf

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$http_port ssl_endpoint=127.0.0.1:$https_port ssl_certificate=$DIR/tls/server.pem ssl_private_key=$DIR/tls/server.key
rgw data = $DIR/rgw
# Deleted objects' data is freed after minutes, not 2 h (with memstore that is memory).
rgw gc obj min wait = 60
rgw gc processor period = 60
EOF
  export CEPH_CONF="$DIR/ceph.conf"

  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  mkdir -p "$DIR/mon/mon.a"
  ceph-mon --mkfs -i a --monmap "$DIR/monmap" >/dev/null 2>&1 || die "ceph-mon --mkfs failed"
  spawn mon ceph-mon -i a
  wait_for "the mon" 300 timeout 5 ceph -s

  local id
  id=$(ceph osd new "$uuid")
  mkdir -p "$DIR/osd/osd.$id"
  ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >"$DIR/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed"
  spawn osd ceph-osd -i "$id"
  wait_for "the OSD" 600 sh -c "ceph osd stat 2>/dev/null | grep -q '1 up'"

  spawn radosgw radosgw -n client.rgw.a
  wait_for "radosgw" 600 curl -sf -o /dev/null "http://127.0.0.1:$http_port/"

  local ak=astragotestkey sk
  sk=$(openssl rand -hex 20)
  radosgw-admin user create --uid=test --display-name=test --access-key="$ak" --secret-key="$sk" >/dev/null ||
    die "radosgw-admin user create failed"
  # The bucket the tests and the bench use, made with a signed request (curl signs SigV4 itself).
  curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ak:$sk" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "http://127.0.0.1:$http_port/$BUCKET" >/dev/null || die "could not create bucket $BUCKET"

  cat >"$ENV_FILE.tmp" <<EOF
RGW_ENDPOINT=http://127.0.0.1:$http_port
RGW_HTTPS_ENDPOINT=https://127.0.0.1:$https_port
RGW_CA_FILE=$DIR/tls/ca.pem
RGW_ACCESS_KEY_ID=$ak
RGW_SECRET_ACCESS_KEY=$sk
RGW_BUCKET=$BUCKET
RGW_STORE=$STORE
RGW_DIR=$DIR
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  log "up: http://127.0.0.1:$http_port and https://127.0.0.1:$https_port ($STORE), folder $DIR"
  cat "$ENV_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env)
    [ -f "$ENV_FILE" ] && alive radosgw || die "no lane runs in $DIR (scripts/rgw.sh start)"
    cat "$ENV_FILE"
    ;;
  *) die "usage: scripts/rgw.sh start|stop|env" ;;
esac
