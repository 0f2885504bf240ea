#!/usr/bin/env bash
# Make sure the Debian packages and servers the test suite uses are here (run as root on a
# fresh Debian machine; a non-root user gets told what is missing instead).
set -euo pipefail

# systemd: only for `systemd-analyze verify` of the worker unit in docs/multihost.md
PACKAGES=(slapd ldap-utils dovecot-imapd dovecot-managesieved dovecot-sieve postgresql openssl chromium chromium-driver postfix systemd)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix: "No configuration" writes no /etc/postfix/main.cf, so installing it neither
    # starts nor configures a system instance on port 25; the cut-over tests start private
    # instances with their own config directory (postfix -c) on 127.0.0.1
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    # the packages' own services are not wanted: the tests start private instances
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL for the store tests and multi-worker mode: start the cluster when it is down.
pg_ok() { psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; }
if ! pg_ok; then
    if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
        version=$(ls /etc/postgresql | sort -V | tail -1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
        for _ in $(seq 1 60); do pg_ok && break; pg_isready -h 127.0.0.1 -q && break; sleep 0.5; done
    fi
fi
if ! pg_ok && [[ $(id -u) -eq 0 ]]; then
    # a stock cluster asks for a password over TCP: give the postgres role the one the
    # Makefile exports as PGPASSWORD (a test-only server bound to 127.0.0.1)
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD '${PGPASSWORD:-migrator-test}'" >/dev/null 2>&1 || true
fi
if ! pg_ok; then
    echo "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres" >&2
    exit 1
fi
echo "test services ready: slapd, dovecot (with ManageSieve), postfix and PostgreSQL available"
