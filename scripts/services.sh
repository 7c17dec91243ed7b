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
# - PgBouncer (Debian's package) in front of PostgreSQL's `test` database, for
#   tests/pgbouncer.rs, as two processes of its own (config, log and pid files in
#   /etc/pgbouncer-sluicegate, /var/log/pgbouncer-sluicegate, /run/pgbouncer-sluicegate):
#     127.0.0.1:6432  transaction mode (pool_mode = transaction)
#     127.0.0.1:6433  session mode (pool_mode = session)
#   Each serves the database `test` (PostgreSQL's, at 127.0.0.1:5432; also as `one_server` and
#   `two_servers`, through that many server connections), `unreachable` (a server nothing
#   listens on: PgBouncer holds a login to it for query_wait_timeout), and its admin console
#   (database `pgbouncer`, users `postgres` and `root`: SHOW, RECONNECT, KILL, PAUSE, RESUME).
#   Logins as on the server: `postgres` and `root` without a password, `sluicegate_auth` with
#   its password. Debian's own PgBouncer service (its /etc/pgbouncer, port 6432) is stopped
#   and disabled: it would take the port.
# - libpq-dev (PostgreSQL's C client library and headers), for the diesel tests.
#
# With arguments it acts on one server, for the restart tests (tests/*_restart.rs,
# tests/pgbouncer.rs):
#
#   scripts/services.sh start postgres|mariadb            starts the installed server if it
#                                                          is down; changes no setting
#   scripts/services.sh start pgbouncer                    the setup above for both PgBouncer
#                                                          processes (their own files only)
#   scripts/services.sh stop postgres|mariadb|pgbouncer    shuts it down (PostgreSQL: fast
#                                                          mode; PgBouncer: at once, SIGTERM)
#                                                          and returns once it no longer
#                                                          answers
#
# These are test fixtures for a machine that exists to run tests: never point this script at
# a server that holds anything else. Set SLUICEGATE_SKIP_SERVICES=1 to skip it entirely (then
# `start` and `stop` fail, so the restart tests skip).
set -euo pipefail

usage() {
    echo "usage: $0 [start|stop postgres|mariadb|pgbouncer]" >&2
    exit 2
}

ACTION=${1:-}
SERVER=${2:-}
if [[ -n "$ACTION" ]]; then
    [[ $# == 2 && "$ACTION" =~ ^(start|stop)$ && "$SERVER" =~ ^(postgres|mariadb|pgbouncer)$ ]] ||
        usage
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

# Starts the installed server if it is down, and nothing else: what the restart tests ask for,
# so that a developer who opts in to them gets their server back as it was, not reconfigured.
postgres_start() {
    if ! pg_up; then
        say "starting PostgreSQL"
        local version cluster
        read -r version cluster _ < <(pg_cluster)
        as_root pg_ctlcluster "$version" "$cluster" start || as_root service postgresql start
    fi
    wait_for "PostgreSQL" pg_up
}

postgres_service() {
    if ! command -v pg_lsclusters >/dev/null || [[ -z "$(pg_lsclusters -h 2>/dev/null)" ]]; then
        apt_install postgresql postgresql-client
    fi
    # The certificate first: a server set to load it does not start without it.
    postgres_tls_files
    postgres_start

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

# Starts the installed server if it is down, and nothing else (as postgres_start).
mariadb_start() {
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
}

mariadb_service() {
    if ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null; then
        apt_install mariadb-server mariadb-client
    fi
    mariadb_start
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
    # On, and with our certificate (a server set up by an earlier version of this script may
    # use one from another directory, which the tests do not trust).
    if [[ "$(my_sql 'SELECT @@have_ssl')" == YES &&
        "$(my_sql 'SELECT @@ssl_cert')" == "$MY_TLS_DIR/cert.pem" ]] &&
        as_root test -s "$MY_TLS_DIR/ca.pem"; then
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
        # The include of the project's earlier name goes: one certificate, ours.
        as_root sed -i '\|^!include /etc/mysql/sluice-tls/tls.cnf$|d' /etc/mysql/my.cnf
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

# ---- PgBouncer -----------------------------------------------------------------------------

# Two processes of Debian's pgbouncer, one per pooling mode: PgBouncer sets the mode per
# database or user, not per port, and the tests want the same database `test` in both modes.
PGB_CONF=/etc/pgbouncer-sluicegate
PGB_RUN=/run/pgbouncer-sluicegate
PGB_LOG=/var/log/pgbouncer-sluicegate
PGB_MODES=(transaction session)
pgb_port() { case $1 in transaction) echo 6432 ;; session) echo 6433 ;; esac; }

# Whether the admin console of the process for mode $1 answers.
pgb_up() { psql -h 127.0.0.1 -p "$(pgb_port "$1")" -U postgres -d pgbouncer -Atc 'show version'; }
pgb_admin() { psql -h 127.0.0.1 -p "$(pgb_port "$1")" -U postgres -d pgbouncer -Atc "$2"; }
pgb_pid() { as_root cat "$PGB_RUN/$1.pid" 2>/dev/null; }
# Whether the process of the pid file runs (after a reboot, another process may have its pid).
pgb_running() {
    local pid
    pid=$(pgb_pid "$1") && [[ -n "$pid" ]] &&
        [[ "$(as_root cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]]
}

# The configuration of the process for mode $1.
pgb_ini() {
    local mode=$1
    cat <<EOF
; Written by sluicegate's scripts/services.sh (edits are overwritten): PgBouncer in $mode mode
; for tests/pgbouncer.rs.
[databases]
test = host=127.0.0.1 port=5432 dbname=test
; The same database through one and two server connections, for tests that need to know
; which server connection a client lands on.
one_server = host=127.0.0.1 port=5432 dbname=test pool_size=1
two_servers = host=127.0.0.1 port=5432 dbname=test pool_size=2
; Nothing listens on port 1: PgBouncer's own connects fail, so a client's login waits on
; PgBouncer (the tests of what a pool sees then).
unreachable = host=127.0.0.1 port=1 dbname=test

[pgbouncer]
pool_mode = $mode
listen_addr = 127.0.0.1
listen_port = $(pgb_port "$mode")
; No Unix socket: Debian's own service and PostgreSQL keep theirs in /var/run/postgresql.
unix_socket_dir =
; Logins as on the server (pg_hba.conf above): hba.conf says who gives a password, and
; userlist.txt lists the users, with the one password PgBouncer checks and gives PostgreSQL.
auth_type = hba
auth_hba_file = $PGB_CONF/hba.conf
auth_file = $PGB_CONF/userlist.txt
admin_users = postgres, root
logfile = $PGB_LOG/$mode.log
pidfile = $PGB_RUN/$mode.pid
; Few server connections per database and user (the tests run several pools of several
; connections against them), many clients.
default_pool_size = 4
max_client_conn = 500
; PgBouncer's own waits, bounded well below their defaults (120 s for a query waiting for a
; server connection, 15 s for PgBouncer's own login to the server and between its retries):
; the settings the crate guide recommends, and short enough for tests.
query_wait_timeout = 5
server_connect_timeout = 5
server_login_retry = 1
EOF
}

pgb_hba() {
    cat <<EOF
# Written by sluicegate's scripts/services.sh: as PostgreSQL's rules, read top down.
host all $AUTH_USER 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
EOF
}

# Installs standard input as $PGB_CONF/$1 with mode $2, owned by postgres (PgBouncer runs as
# that user); returns whether it changed.
pgb_install_file() {
    local name=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if as_root cmp -s "$tmp" "$PGB_CONF/$name"; then
        rm -f "$tmp"
        return 1
    fi
    as_root install -o postgres -g postgres -m "$mode" "$tmp" "$PGB_CONF/$name"
    rm -f "$tmp"
}

pgbouncer_service() {
    if ! command -v pgbouncer >/dev/null; then
        apt_install pgbouncer
    fi
    # Debian's own service listens on 6432 when it runs (in containers, Debian's policy-rc.d
    # often keeps it from starting at install): stop it, and keep it from starting at boot.
    if [[ -e /etc/init.d/pgbouncer ]] && as_root /etc/init.d/pgbouncer status >/dev/null 2>&1; then
        say "stopping Debian's own PgBouncer service (it takes port 6432)"
        as_root /etc/init.d/pgbouncer stop >/dev/null || true
    fi
    if command -v systemctl >/dev/null && systemctl is-enabled pgbouncer >/dev/null 2>&1; then
        as_root systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null && [[ -e /etc/init.d/pgbouncer ]]; then
        as_root update-rc.d pgbouncer disable >/dev/null 2>&1 || true
    fi

    as_root install -d -o postgres -g postgres -m 755 "$PGB_CONF" "$PGB_RUN" "$PGB_LOG"
    local changed=
    pgb_hba | pgb_install_file hba.conf 640 && changed=1
    # The auth user's password in clear: PgBouncer needs it to log in to PostgreSQL (SCRAM)
    # for that user. The others are listed with no password because PgBouncer (1.18) lets in
    # only users it knows, trusted ones too.
    printf '"%s" "%s"\n"postgres" ""\n"root" ""\n' "$AUTH_USER" "$AUTH_PASSWORD" |
        pgb_install_file userlist.txt 640 && changed=1
    local mode
    for mode in "${PGB_MODES[@]}"; do
        local mode_changed=$changed
        pgb_ini "$mode" | pgb_install_file "$mode.ini" 644 && mode_changed=1
        if [[ -n "$mode_changed" ]] && pgb_running "$mode"; then
            # Some settings (the port, the socket) take a restart; it is quick.
            say "restarting PgBouncer ($mode mode) for its new configuration"
            pgb_stop "$mode"
        fi
        if ! pgb_running "$mode"; then
            say "starting PgBouncer ($mode mode) on 127.0.0.1:$(pgb_port "$mode")"
            as_root rm -f "$PGB_RUN/$mode.pid"
            # PgBouncer refuses to run as root; -u switches to postgres, which owns its files.
            as_root pgbouncer -d -q -u postgres "$PGB_CONF/$mode.ini"
        fi
        if ! wait_for "PgBouncer ($mode mode)" pgb_up "$mode"; then
            say "see $PGB_LOG/$mode.log" >&2
            return 1
        fi
        # A test that died between PAUSE (or KILL) and RESUME leaves databases paused: resume
        # them, so that the setup always leaves a PgBouncer that serves.
        local db paused
        while IFS='|' read -r db paused; do
            if [[ "$paused" != 0 ]]; then
                say "resuming database $db on PgBouncer ($mode mode)"
                pgb_admin "$mode" "resume $db" >/dev/null
            fi
        done < <(pgb_admin "$mode" 'show databases' | awk -F'|' '{ print $1 "|" $(NF-1) }')
    done
    say "PgBouncer ready on 127.0.0.1:6432 (transaction) and 6433 (session)" \
        "($(pgb_admin transaction 'show version'))"
}

# Stops the process for mode $1 at once (SIGTERM: PgBouncer's SIGINT waits for every client
# to finish, which a paused PgBouncer never sees), and returns once it has exited.
pgb_stop() {
    local mode=$1 pid
    if pgb_running "$mode"; then
        pid=$(pgb_pid "$mode")
        say "stopping PgBouncer ($mode mode)"
        as_root kill -TERM "$pid"
        wait_for_not "PgBouncer ($mode mode) process $pid" as_root kill -0 "$pid"
    fi
    wait_for_not "PgBouncer ($mode mode)" pgb_up "$mode"
}

pgbouncer_stop() {
    local mode
    for mode in "${PGB_MODES[@]}"; do
        pgb_stop "$mode"
    done
    say "PgBouncer stopped"
}

# ---- libpq ---------------------------------------------------------------------------------

# PostgreSQL's C client library and its headers: diesel's `postgres` backend links libpq.
libpq_dev() {
    if ! dpkg-query -W -f '${Status}' libpq-dev 2>/dev/null | grep -q 'ok installed'; then
        apt_install libpq-dev
    fi
}

case "$ACTION $SERVER" in
    " ")
        libpq_dev
        postgres_service
        mariadb_service
        pgbouncer_service
        ;;
    "start postgres") postgres_start ;;
    "start mariadb") mariadb_start ;;
    "stop postgres") postgres_stop ;;
    "stop mariadb") mariadb_stop ;;
    # PgBouncer logs in to PostgreSQL: start that first (it returns at once when it is up).
    "start pgbouncer")
        postgres_service
        pgbouncer_service
        ;;
    "stop pgbouncer") pgbouncer_stop ;;
esac
