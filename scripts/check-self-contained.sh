#!/usr/bin/env bash
# Fails when a tracked file refers to ../shared: a clone must work on its own, with no folder beside it.
# The pattern is assembled so that this file does not match itself.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./'"shared"
if git grep -n -I -E "$pattern" -- . ; then
  echo "check-self-contained: the files above refer to ../shared; restate what they need inside the repository" >&2
  exit 1
fi
