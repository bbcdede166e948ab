#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 3s).
# Targets are discovered, not listed: any func Fuzz* in any package is
# picked up, so a new fuzzer runs in CI without touching this file.
# Inputs that fail are written to the package's testdata/fuzz/ by go test
# and make this script fail; commit them as regression seeds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-3s}
start=$(date +%s)
failed=()
count=0
# `go test -list` prints a package's matching names, then "ok <package>".
names=()
while read -r line; do
  case "$line" in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(awk '{print $2}' <<<"$line")
      for name in "${names[@]}"; do
        count=$((count + 1))
        echo "== $pkg $name ($fuzztime)"
        # Go's fuzzer sometimes ends a run that found nothing with a bare
        # "context deadline exceeded" when the time is up (no failing input
        # is written): such a run is tried once more; a real failure writes
        # its input to testdata/fuzz and fails again.
        out=$(mktemp)
        if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"; then
          if grep -q '^    context deadline exceeded$' "$out" && ! grep -q 'Failing input written' "$out"; then
            echo "== $pkg $name: the fuzzer's spurious deadline at the end of its time; once more"
            go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" || failed+=("$pkg $name")
          else
            failed+=("$pkg $name")
          fi
        fi
        rm -f "$out"
      done
      names=()
      ;;
  esac
done < <(go test -list '^Fuzz' ./...)

echo "ran $count fuzz targets in $(( $(date +%s) - start ))s"
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
