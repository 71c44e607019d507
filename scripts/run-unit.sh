#!/bin/sh
# run-unit.sh - run each C unit test binary; print a total "N passed, N failed" line.
set -u
pass=0; fail=0
for t in "$@"; do
	out=$("$t" 2>&1); rc=$?
	printf '%s\n' "$out" | tail -n 20
	p=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -n 1)
	pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
	if [ $rc -ne 0 ] && [ "${f:-0}" = 0 ]; then fail=$((fail + 1)); echo "$t: exited $rc"; fi
done
echo "unit: $pass passed, $fail failed"
[ $fail -eq 0 ]
