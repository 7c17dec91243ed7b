#!/usr/bin/env bash
# Makes sure the database servers sluicegate's tests use are up on this machine, and holds what
# the tests need. Idempotent: run it as often as you like (.ci/run runs it every time).
#
# - PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306: started if installed but down,
#   installed from Debian's packages if missing (needs root and apt).
# - PostgreSQL: database `test`; users `postgres` and `root` reach it from 127.0.0.1 without a
#   password (trust, loopback only); user `sluicegate_auth` (password `sluicegate-auth-secret`) must
#   give its password, for the wrong-password tests; user `sluicegate_limited` (no password, trust
#   from 127.0.0.1 like the others) may hold 2 connections at once (CONNECTION LIMIT 2), for
#   the too-many-connections tests (tests/postgres_faults.rs).
#   TLS on (`ssl = on`, for tests/postgres_tls.rs) with a certificate for 127.0.0.1 and
#   localhost signed by a CA of its own; clients trust that CA through its certificate,
#   /etc/postgresql-common/sluicegate-tls/ca.pem. The server reads cert.pem and key.pem beside it.
# - MariaDB: database `test`; `root` reaches it from 127.0.0.1 with an empty password; user
#   `sluicegate_auth` (password `sluicegate-auth-secret`) for the wrong-password tests; user
#   `sluicegate_limited` (empty password) with MAX_USER_CONNECTIONS 2, for the too-many-connections
#   tests (tests/mysql_faults.rs). TLS on, with a CA of its own too:
#   /etc/mysql/sluicegate-tls/ca.pem.
#
# With arguments it acts on one server, for the restart tests (tests/*_restart.rs):
#
#   scripts/services.sh start postgres|mariadb   the setup above, for that server only
#   scripts/services.sh stop postgres|mariadb    shuts it down (PostgreSQL: fast mode) and
#                                                returns once it no longer answers
#
# These are test fixtures for a machine that exists to run tests: never point this script at
# a server that holds anything else. Set SLUICEGATE_SKIP_SERVICES=1 to skip it entirely (then
# `start` and `stop` fail, so the restart tests skip).
set -euo pipefail

usage() {
    echo "usage: $0 [start|stop postgres|mariadb]" >&2
    exit 2
}

ACTION=${1:-}
SERVER=${2:-}
if [[ -n "$ACTION" ]]; then
    [[ $# == 2 && "$ACTION" =~ ^(start|stop)$ && "$SERVER" =~ ^(postgres|mariadb)$ ]] || usage
fi

if [[ "${SLUICEGATE_SKIP_SERVICES:-}" == 1 ]]; then
    if [[ -n "$ACTION" ]]; then
        echo "services: cannot $ACTION $SERVER: SLUICEGATE_SKIP_SERVICES=1" >&2
        exit 1
    fi
    echo "services: skipped (SLUICEGATE_SKIP_SERVICES=1)"
    exit 0
fi

AUTH_USER=sluicegate_auth
AUTH_PASSWORD=sluicegate-auth-secret
# A user that may hold LIMITED_CONNECTIONS connections at once.
LIMITED_USER=sluicegate_limited
LIMITED_CONNECTIONS=2

say() { echo "services: $*"; }

# Waits up to 60 s for a command to succeed.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 120); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    say "$what did not come up within 60 s" >&2
    return 1
}

# Waits up to 60 s for a command to fail.
wait_for_not() {
    local what=$1
    shift
    for _ in $(seq 120); do
        if ! "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    say "$what still answers after 60 s" >&2
    return 1
}

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        say "need root for: $*" >&2
        return 1
    fi
}

apt_install() {
    say "installing $* from Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ---- PostgreSQL ----------------------------------------------------------------------------

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_cluster() { pg_lsclusters -h | head -n 1; }
pg_sql() { psql -h 127.0.0.1 -p 5432 -U postgres -d "${2:-postgres}" -v ON_ERROR_STOP=1 -Atc "$1"; }

postgres_service() {
    if ! command -v pg_lsclusters >/dev/null || [[ -z "$(pg_lsclusters -h 2>/dev/null)" ]]; then
        apt_install postgresql postgresql-client
    fi
    # The certificate first: a server set to load it does not start without it.
    postgres_tls_files
    if ! pg_up; then
        say "starting PostgreSQL"
        local version cluster
        read -r version cluster _ < <(pg_cluster)
        as_root pg_ctlcluster "$version" "$cluster" start || as_root service postgresql start
    fi
    wait_for "PostgreSQL" pg_up

    # Loopback trust for the test users, and a password rule for the auth user placed first
    # (pg_hba.conf is read top down).
    local hba
    hba=$(as_root su postgres -c "psql -Atc 'show hba_file'")
    local rule_auth="host all $AUTH_USER 127.0.0.1/32 scram-sha-256"
    local rule_trust="host all all 127.0.0.1/32 trust"
    if ! as_root grep -qxF "$rule_auth" "$hba" || ! as_root grep -qxF "$rule_trust" "$hba"; then
        say "adding loopback rules to $hba"
        local rest
        rest=$(as_root grep -vxF -e "$rule_auth" -e "$rule_trust" "$hba")
        printf '%s\n%s\n%s\n' "$rule_auth" "$rule_trust" "$rest" | as_root tee "$hba" >/dev/null
        as_root su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
    fi

    for role in postgres root; do
        if [[ -z "$(pg_sql "select 1 from pg_roles where rolname = '$role'")" ]]; then
            pg_sql "create role $role superuser login"
        fi
    done
    if [[ -z "$(pg_sql "select 1 from pg_roles where rolname = '$AUTH_USER'")" ]]; then
        pg_sql "create role $AUTH_USER login password '$AUTH_PASSWORD'"
    else
        pg_sql "alter role $AUTH_USER login password '$AUTH_PASSWORD'" >/dev/null
    fi
    if [[ -z "$(pg_sql "select 1 from pg_roles where rolname = '$LIMITED_USER'")" ]]; then
        pg_sql "create role $LIMITED_USER login connection limit $LIMITED_CONNECTIONS"
    else
        pg_sql "alter role $LIMITED_USER login connection limit $LIMITED_CONNECTIONS" >/dev/null
    fi
    if [[ -z "$(pg_sql "select 1 from pg_database where datname = 'test'")" ]]; then
        pg_sql "create database test"
    fi
    pg_sql "grant all on database test to $AUTH_USER" >/dev/null
    pg_sql "grant connect, temporary on database test to $LIMITED_USER" >/dev/null
    postgres_tls
    say "PostgreSQL ready on 127.0.0.1:5432 ($(pg_sql 'show server_version'), TLS $(pg_tls_state))"
}

# TLS for tests/postgres_tls.rs: a server certificate for 127.0.0.1 and localhost signed by a
# CA of its own (the tests trust that CA through its file, ca.pem), set with ALTER SYSTEM.
# PostgreSQL (10 and later) loads a new certificate on a reload: no restart.
PG_TLS_DIR=/etc/postgresql-common/sluicegate-tls
PG_TLS_NEW=

# Makes the CA and the server's certificate and key, unless all three files are there.
postgres_tls_files() {
    if as_root test -s "$PG_TLS_DIR/ca.pem" && as_root test -s "$PG_TLS_DIR/cert.pem" &&
        as_root test -s "$PG_TLS_DIR/key.pem"; then
        return 0
    fi
    say "making a CA and a TLS certificate for PostgreSQL in $PG_TLS_DIR"
    local tmp
    tmp=$(mktemp -d)
    # rustls refuses a CA certificate as the server's own, hence a CA that signs it. The CA's
    # key is thrown away: nothing else is ever signed with it.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluicegate PostgreSQL test CA" \
        -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$tmp/key.pem" -out "$tmp/server.csr" 2>/dev/null
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
        'basicConstraints=critical,CA:FALSE' 'extendedKeyUsage=serverAuth' >"$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
        -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>/dev/null
    # PostgreSQL wants its key owned by the user it runs as and closed to everyone else.
    as_root install -d -m 755 "$PG_TLS_DIR"
    as_root install -o postgres -g postgres -m 644 "$tmp/ca.pem" "$tmp/cert.pem" "$PG_TLS_DIR/"
    as_root install -o postgres -g postgres -m 600 "$tmp/key.pem" "$PG_TLS_DIR/"
    rm -rf "$tmp"
    PG_TLS_NEW=1
}

# Whether a client that trusts only our CA gets an encrypted session whose certificate names
# 127.0.0.1 (libpq's verify-full).
pg_tls_up() {
    local dsn="host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
    dsn+=" sslmode=verify-full sslrootcert=$PG_TLS_DIR/ca.pem"
    local ssl
    ssl=$(psql -Atc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' "$dsn" 2>/dev/null)
    [[ "$ssl" == t ]]
}
pg_tls_state() { if pg_tls_up; then echo on; else echo off; fi; }

# Points the server at the files (ssl_ca_file stays unset: no client certificates) and
# reloads it when anything changed.
postgres_tls() {
    local changed=$PG_TLS_NEW setting want
    for setting in ssl ssl_cert_file ssl_key_file; do
        case $setting in
            ssl) want=on ;;
            ssl_cert_file) want=$PG_TLS_DIR/cert.pem ;;
            ssl_key_file) want=$PG_TLS_DIR/key.pem ;;
        esac
        if [[ "$(pg_sql "show $setting")" != "$want" ]]; then
            # One statement per call: ALTER SYSTEM cannot run inside a transaction block.
            pg_sql "alter system set $setting = '$want'" >/dev/null
            changed=1
        fi
    done
    if [[ -n "$changed" ]]; then
        say "turning on TLS for PostgreSQL with the certificate in $PG_TLS_DIR (reload)"
        pg_sql 'select pg_reload_conf()' >/dev/null
        PG_TLS_NEW=
    fi
    if ! wait_for "PostgreSQL with TLS" pg_tls_up; then
        say "PostgreSQL serves no verified TLS with $PG_TLS_DIR/cert.pem: see its log" >&2
        return 1
    fi
}

postgres_stop() {
    if pg_up; then
        say "stopping PostgreSQL"
        local version cluster
        read -r version cluster _ < <(pg_cluster)
        # Fast mode terminates the open sessions, and returns once the server has exited.
        as_root pg_ctlcluster "$version" "$cluster" stop -m fast
    fi
    wait_for_not "PostgreSQL" pg_up
    say "PostgreSQL stopped"
}

# ---- MariaDB -------------------------------------------------------------------------------

my_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping; }
my_sql() { mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root -N -e "$1"; }

mariadb_service() {
    if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null; then
        apt_install mariadb-server mariadb-client
    fi
    if ! as_root mariadb-admin ping >/dev/null 2>&1; then
        say "starting MariaDB"
        # Debian's init script waits 30 s and then reports failure when its own status check
        # cannot log in, even though the server is up; start the server directly instead.
        if command -v mysqld_safe >/dev/null; then
            as_root sh -c 'nohup mysqld_safe >/dev/null 2>&1 &'
        else
            as_root service mariadb start || true
        fi
    fi
    wait_for "MariaDB" as_root mariadb-admin ping
    # A fresh install lets root in through the Unix socket only: allow loopback TCP with an
    # empty password too (the socket still works).
    if ! my_up >/dev/null 2>&1; then
        say "letting root in from 127.0.0.1 with an empty password"
        as_root mariadb -e "
            ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('')
                OR unix_socket;
            CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            FLUSH PRIVILEGES;"
    fi
    wait_for "MariaDB on 127.0.0.1:3306" my_up
    my_sql "CREATE DATABASE IF NOT EXISTS test;
            CREATE USER IF NOT EXISTS '$AUTH_USER'@'%' IDENTIFIED BY '$AUTH_PASSWORD';
            ALTER USER '$AUTH_USER'@'%' IDENTIFIED BY '$AUTH_PASSWORD';
            GRANT ALL PRIVILEGES ON test.* TO '$AUTH_USER'@'%';
            CREATE USER IF NOT EXISTS '$LIMITED_USER'@'%' IDENTIFIED BY ''
                WITH MAX_USER_CONNECTIONS $LIMITED_CONNECTIONS;
            ALTER USER '$LIMITED_USER'@'%' IDENTIFIED BY ''
                WITH MAX_USER_CONNECTIONS $LIMITED_CONNECTIONS;
            GRANT ALL PRIVILEGES ON test.* TO '$LIMITED_USER'@'%';"
    mariadb_tls
    say "MariaDB ready on 127.0.0.1:3306 ($(my_sql 'SELECT VERSION()'), TLS $(my_sql 'SELECT @@have_ssl'))"
}

# TLS for the mysql-rustls tests: a certificate for 127.0.0.1 signed by a CA of its own (the
# tests trust that CA through its file, ca.pem), loaded from a config file of our own that my.cnf includes. MariaDB reads
# its certificate only at start, so the first run restarts it once.
MY_TLS_DIR=/etc/mysql/sluicegate-tls
mariadb_tls() {
    if [[ "$(my_sql 'SELECT @@have_ssl')" == YES ]]; then
        return 0
    fi
    if [[ -n "${MY_TLS_TRIED:-}" ]]; then
        say "MariaDB started without TLS despite $MY_TLS_DIR/tls.cnf" >&2
        return 1
    fi
    MY_TLS_TRIED=1
    say "giving MariaDB a TLS certificate in $MY_TLS_DIR"
    as_root mkdir -p "$MY_TLS_DIR"
    if ! as_root test -s "$MY_TLS_DIR/ca.pem"; then
        # A CA of its own and a server certificate it signs: rustls refuses a CA certificate
        # as the server's own.
        local tmp
        tmp=$(mktemp -d)
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluicegate test CA" \
            -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$tmp/key.pem" -out "$tmp/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$tmp/ext"
        openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
            -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>/dev/null
        as_root cp "$tmp/ca.pem" "$tmp/cert.pem" "$tmp/key.pem" "$MY_TLS_DIR/"
        rm -rf "$tmp"
    fi
    as_root chown -R mysql: "$MY_TLS_DIR"
    as_root chmod 755 "$MY_TLS_DIR"
    as_root chmod 644 "$MY_TLS_DIR/cert.pem" "$MY_TLS_DIR/ca.pem"
    as_root chmod 600 "$MY_TLS_DIR/key.pem"
    printf '[mariadbd]\nssl_cert = %s/cert.pem\nssl_key = %s/key.pem\n' "$MY_TLS_DIR" "$MY_TLS_DIR" |
        as_root tee "$MY_TLS_DIR/tls.cnf" >/dev/null
    local include="!include $MY_TLS_DIR/tls.cnf"
    if ! as_root grep -qxF "$include" /etc/mysql/my.cnf; then
        printf '\n%s\n' "$include" | as_root tee -a /etc/mysql/my.cnf >/dev/null
    fi
    mariadb_stop
    mariadb_service
}

mariadb_stop() {
    if my_up >/dev/null 2>&1 || as_root mariadb-admin ping >/dev/null 2>&1; then
        say "stopping MariaDB"
        # Returns once the server has exited; mysqld_safe then exits too (it restarts a server
        # only after a crash).
        as_root mariadb-admin shutdown
    fi
    wait_for_not "MariaDB" as_root mariadb-admin ping
    wait_for_not "MariaDB on 127.0.0.1:3306" my_up
    say "MariaDB stopped"
}

case "$ACTION $SERVER" in
    " ")
        postgres_service
        mariadb_service
        ;;
    "start postgres") postgres_service ;;
    "start mariadb") mariadb_service ;;
    "stop postgres") postgres_stop ;;
    "stop mariadb") mariadb_stop ;;
esac
