# shellcheck shell=bash
# Sourced by the rbd benches (bash): the CPU used by the pair's daemons, and a wait until
# they are idle. Needs $dir/pair, the pair's directory (spec/support/ceph-fixture up).
pair_tick=$(getconf CLK_TCK)

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
