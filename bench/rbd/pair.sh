# shellcheck shell=bash
# Sourced by the rbd benches (bash), which set $top (the source tree) and $run (vmdr-run):
# a pair of their own, the CPU used by its daemons, and a wait until they are idle.
pair_tick=$(getconf CLK_TCK)

# Starts a pair (spec/support/ceph-fixture) in a fresh directory /tmp/vmdr-bench-NAME.*
# ($dir), torn down with it when the script exits; sets $env, its env file, and loads it.
pair_up() {
    dir=$(mktemp -d "/tmp/vmdr-bench-$1.XXXXXX")
    trap '"$top/spec/support/ceph-fixture" down "$dir/pair" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
    "$top/spec/support/ceph-fixture" up "$dir/pair" >/dev/null
    env=$dir/pair/env
    # shellcheck disable=SC1090
    . "$env"
}

# One untimed step (bench.lua) or one timed batch with per-image figures (items.lua).
step() { "$run" -q "$top/bench/rbd/bench.lua" -- "$env" "$@"; }
items() { "$run" -q "$top/bench/rbd/items.lua" -- "$env" "$@"; }

# Clock ticks used so far by the daemons of both sites (mons, OSDs, rbd-mirrors).
pair_cpu() {
    local t=0 p
    for p in $(cat "$dir"/pair/*/pids/* 2>/dev/null); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# Waits until the daemons used at most 15 % of one CPU in each of 2 consecutive seconds
# (an idle pair with 100 mirrored images uses about 8 %), at most 120 s. The work an
# untimed step leaves to the daemons (a resync's or a removal's tail: about 20 s at
# 30-50 % of one CPU after resyncing 100 images) then stays out of the next timed
# measurement, whatever its method. Prints the seconds waited.
pair_settle() {
    local a b quiet=0 waited=0 max=$((pair_tick * 15 / 100))
    a=$(pair_cpu)
    while [ "$quiet" -lt 2 ] && [ "$waited" -lt 120 ]; do
        sleep 1
        waited=$((waited + 1))
        b=$(pair_cpu)
        if [ $((b - a)) -le "$max" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        a=$b
    done
    echo "$waited"
}
