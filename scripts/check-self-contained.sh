#!/usr/bin/env bash
# Fails when a tracked file refers to the shared design folder beside the repository (dot-dot-slash "shared"):
# a clone must work on its own, with nothing next to it. The pattern is assembled so that it does not match here.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./'"shared"
if git grep -n -I -E "$pattern" -- . ; then
  echo "check-self-contained: the files above point outside the repository; restate what they need inside it" >&2
  exit 1
fi
