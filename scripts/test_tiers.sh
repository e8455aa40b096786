#!/usr/bin/env bash
# `make test`: the e2e tier in one pytest process and, beside it, the unit and integration
# tiers in another; exits non-zero when either fails.
#
# Why two processes: on a 2-core box the unit and integration tiers keep about one core busy
# (measured: 330 s of integration wall for ~240 s of CPU), while the e2e tier's deploys and
# ingests use both most of the time; run one after the other, half a core sits idle for six
# minutes. The tiers share nothing but the machine: integration starts no Ray (tests/tiers.py
# enforces it), each process has its own milvus-lite server on its own port, and the ONNX
# graph cache is made for concurrent readers (tests/conftest.py). The e2e tier stays whole in
# one process: one app for all its modules, its tests in their order.
#
# Two e2e modules run in the second process: they use nothing of the shared app (each starts a
# Ray of its own), and one of them waits out Ray's fixed 30 s start-up timeout, which costs no
# CPU; with them there, the two processes end closer together.
#
# The e2e tier's output streams live; the other tiers' is kept in a file and printed after.
# Extra arguments go to both pytest runs (e.g. --durations=30, -x).
set -u
PY=${PY:-.venv/bin/python}
BESIDE=(tests/e2e/test_local_ray.py tests/e2e/test_installed_wheel.py)
fast_log=$(mktemp "${TMPDIR:-/tmp}/lookalike-fast-tiers.XXXXXX")

# Started as a job (set -m): a plain background command of a script has SIGINT ignored, and
# pytest would then neither stop on Ctrl-C nor run its teardown. As a job it sits in a process
# group of its own, so the trap below passes Ctrl-C on once the foreground run has stopped.
set -m
"$PY" -m pytest -q -m "not scale" tests/unit tests/integration "${BESIDE[@]}" "$@" \
    >"$fast_log" 2>&1 &
fast=$!
set +m
trap 'kill -INT "$fast" 2>/dev/null' INT TERM

"$PY" -m pytest -q -m "not scale" tests/e2e "${BESIDE[@]/#/--ignore=}" "$@"
e2e_rc=$?
wait "$fast"
fast_rc=$?
# A Ctrl-C during that wait ends the wait, not the run (the trap passed it on): wait out its
# teardown, so that nothing it started is left running.
while kill -0 "$fast" 2>/dev/null; do
    wait "$fast"
    fast_rc=$?
done
trap - INT TERM

echo
echo "========= unit and integration tiers, and ${BESIDE[*]} (ran beside the e2e tier) ========="
cat "$fast_log"
rm -f "$fast_log"
echo
echo "make test: e2e tier exit ${e2e_rc}, unit and integration tiers exit ${fast_rc}"
[ "$e2e_rc" -eq 0 ] && [ "$fast_rc" -eq 0 ]
