#!/usr/bin/env bash
# Validate FHIR R4 JSON (NDJSON or single documents) offline with HAPI FHIR's instance validator.
# Fetches the validator's class path from Maven Central on first use (cached after).
#   tools/fhir-validator/validate.sh [--warnings] FILE...   (stdin when no FILE)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${ARTERIA_CACHE_DIR:-$HOME/.cache/arteria}/fhir-validator"
command -v java >/dev/null || { echo "validate.sh: java (17+) is required" >&2; exit 2; }
if [ ! -f "$cache/.complete" ]; then
  command -v mvn >/dev/null || { echo "validate.sh: maven is required to fetch the validator" >&2; exit 2; }
  mkdir -p "$cache/libs"
  echo "validate.sh: fetching HAPI FHIR validator into $cache (first use)" >&2
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/libs" >&2
  touch "$cache/.complete"
fi
exec java -Xmx1g -XX:+UseSerialGC -cp "$cache/libs/*" "$here/Validate.java" "$@"
