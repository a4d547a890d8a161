#!/bin/sh
# A tiny "test": the greeting file is present and friendly. Exit 0 = pass.
set -eu
test -f greeting.txt
grep -q '^Hello' greeting.txt
echo "greeting ok: $(cat greeting.txt)"
