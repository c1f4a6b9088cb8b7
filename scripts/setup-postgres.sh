#!/usr/bin/env bash
# Install PostgreSQL 15 and the pgvector extension for the PostgreSQL store's tests.
#
# PostgreSQL comes from Debian's packages. Debian bookworm ships no pgvector
# package (it arrived in trixie, built for PostgreSQL 17), so where apt has no
# postgresql-15-pgvector this builds Debian's own pgvector source release
# against PostgreSQL 15, checked by its SHA-256. Needs root; without it the
# script says what is missing and the PostgreSQL tests are skipped.
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGVECTOR_VERSION=0.8.0
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
PGVECTOR_URL=http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${PGVECTOR_VERSION}.orig.tar.gz

have_pgvector() {
  [ -x "$PG_BIN/pg_config" ] &&
    [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector.control" ]
}

if [ -x "$PG_BIN/postgres" ] && have_pgvector; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: PostgreSQL $PG_MAJOR with pgvector is missing and this is not a root Debian shell;" \
       "the PostgreSQL store tests will be skipped" >&2
  exit 0
fi

apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
apt-get update -qq
apt_install postgresql-$PG_MAJOR
if ! have_pgvector && apt-cache show postgresql-$PG_MAJOR-pgvector >/dev/null 2>&1; then
  apt_install postgresql-$PG_MAJOR-pgvector
fi
if ! have_pgvector; then
  echo "building pgvector $PGVECTOR_VERSION (Debian's source) for PostgreSQL $PG_MAJOR" >&2
  apt_install postgresql-server-dev-$PG_MAJOR build-essential curl ca-certificates
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  curl -fsSL "$PGVECTOR_URL" -o "$work/pgvector.tar.gz"
  echo "$PGVECTOR_SHA256  $work/pgvector.tar.gz" | sha256sum -c --quiet
  tar -xzf "$work/pgvector.tar.gz" -C "$work"
  # OPTFLAGS="": no -march=native, so the build runs on any x86-64 machine.
  make -s -C "$work/pgvector-$PGVECTOR_VERSION" PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" \
    >/dev/null 2>&1
  make -s -C "$work/pgvector-$PGVECTOR_VERSION" PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
fi
have_pgvector
