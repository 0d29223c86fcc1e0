#!/usr/bin/env bash
# A PostgreSQL server for the tests, on 127.0.0.1 only: installs PostgreSQL (apt) when missing,
# creates a cluster of its own ("tributary", port 54329 unless TRIBUTARY_TEST_POSTGRES_PORT
# says otherwise) with a role and a database for the tests, starts it, and prints its URL on
# stdout (everything else goes to stderr). Idempotent, and fast when the server already runs.
#
# The server speaks TLS with a certificate for 127.0.0.1 signed by a CA of its own (made with
# openssl on first use, in the cluster's folder); the URL says `sslmode=verify-full` and names
# that CA as `sslrootcert`, so every warehouse test runs over verified TLS.
#
#   scripts/start-postgres.sh            start when needed; print the URL
#   scripts/start-postgres.sh --restart  restart the server (the lost-connection test uses it)
#   scripts/start-postgres.sh --stop     stop it
#
# PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user and is driven
# with pg_ctlcluster, which drops to that user. Needs root (or sudo) to install and start.
set -euo pipefail

mode=${1:-start}
case "$mode" in start | --restart | --stop) ;; *) echo "usage: $0 [--restart|--stop]" >&2; exit 2 ;; esac

port=${TRIBUTARY_TEST_POSTGRES_PORT:-54329}
cluster=tributary
role=tributary
password=tributary-test
database=tributary_test
version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
tls_dir="/etc/postgresql/$version/$cluster/tls"
url="postgres://$role:$password@127.0.0.1:$port/$database?sslmode=verify-full&sslrootcert=$tls_dir/ca.pem"

log() { echo "start-postgres: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root runuser -u postgres -- "$@"; }

can_connect() {
    command -v psql >/dev/null 2>&1 && [ -f "$tls_dir/ca.pem" ] &&
        PGPASSWORD=$password PGCONNECT_TIMEOUT=3 PGSSLMODE=verify-full PGSSLROOTCERT="$tls_dir/ca.pem" \
            psql -h 127.0.0.1 -p "$port" -U "$role" -d "$database" -tAc 'SELECT 1' >/dev/null 2>&1
}

# A CA and a server certificate for 127.0.0.1 (what rustls and libpq's verify-full check: a v3
# CA certificate, a subjectAltName on the server's), and the server configured to use them.
ensure_tls() {
    if [ ! -f "$tls_dir/server.key" ]; then
        command -v openssl >/dev/null 2>&1 ||
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >&2
        log "making a test CA and a certificate for 127.0.0.1 in $tls_dir"
        as_root mkdir -p "$tls_dir"
        as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Tributary test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" 2>/dev/null
        as_root openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" 2>/dev/null
        printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" |
            as_root tee "$tls_dir/server.ext" >/dev/null
        as_root openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
            -CAcreateserial -days 3650 -extfile "$tls_dir/server.ext" -out "$tls_dir/server.pem" 2>/dev/null
        as_root chown postgres:postgres "$tls_dir/server.key" "$tls_dir/server.pem"
        as_root chmod 600 "$tls_dir/server.key" "$tls_dir/ca.key"
        as_root chmod 644 "$tls_dir/ca.pem" "$tls_dir/server.pem"
    fi
    local conf="/etc/postgresql/$version/$cluster/conf.d/tributary-tls.conf"
    if [ ! -f "$conf" ]; then
        as_root tee "$conf" >/dev/null <<CONF
# Written by scripts/start-postgres.sh: TLS with the tests' own CA (sslmode=verify-full).
ssl = on
ssl_cert_file = '$tls_dir/server.pem'
ssl_key_file = '$tls_dir/server.key'
CONF
        tls_changed=1
    fi
}
tls_changed=0

# Fast path: already running and set up.
if [ "$mode" = start ] && can_connect; then
    echo "$url"
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL (apt-get install postgresql)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
tls_dir="/etc/postgresql/$version/$cluster/tls"
url="postgres://$role:$password@127.0.0.1:$port/$database?sslmode=verify-full&sslrootcert=$tls_dir/ca.pem"

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
    log "creating cluster $version/$cluster on 127.0.0.1:$port"
    as_root pg_createcluster "$version" "$cluster" --port "$port" --start-conf manual >&2
    as_root tee "/etc/postgresql/$version/$cluster/conf.d/tributary-tests.conf" >/dev/null <<CONF
# Written by scripts/start-postgres.sh: the tests' server listens on loopback only.
listen_addresses = '127.0.0.1'
port = $port
CONF
fi
ensure_tls

status() { pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4 }'; }
case "$mode" in
--stop)
    [ "$(status)" = online ] && as_root pg_ctlcluster "$version" "$cluster" stop -m fast >&2
    exit 0
    ;;
--restart)
    log "restarting $version/$cluster"
    as_root pg_ctlcluster "$version" "$cluster" restart -m fast >&2
    ;;
*)
    if [ "$(status)" != online ]; then
        log "starting $version/$cluster"
        as_root mkdir -p /var/run/postgresql
        as_root chown postgres:postgres /var/run/postgresql
        as_root pg_ctlcluster "$version" "$cluster" start >&2
    elif [ "$tls_changed" = 1 ]; then
        log "reloading $version/$cluster for its TLS settings"
        as_root pg_ctlcluster "$version" "$cluster" reload >&2
    fi
    ;;
esac

for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p "$port" || { log "the server did not come up; see /var/log/postgresql/"; exit 1; }
if [ "$tls_changed" = 1 ]; then
    # A reload takes effect a moment later: wait for a verified TLS session (the role may not
    # exist yet on a new cluster, so only the handshake is waited for).
    for _ in $(seq 1 50); do
        PGSSLMODE=verify-full PGSSLROOTCERT="$tls_dir/ca.pem" PGCONNECT_TIMEOUT=3 \
            psql -h 127.0.0.1 -p "$port" -U "$role" -d "$database" -tAc 'SELECT 1' 2>&1 |
            grep -qv 'SSL\|certificate' && break
        sleep 0.1
    done
fi

if ! can_connect; then
    log "creating role $role and database $database"
    as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role LOGIN PASSWORD '$password';
  ELSE
    ALTER ROLE $role LOGIN PASSWORD '$password';
  END IF;
END \$\$;
SQL
    if ! as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
        as_postgres createdb -p "$port" -O "$role" "$database" >&2
    fi
    can_connect || { log "cannot connect as $role"; exit 1; }
fi
echo "$url"
