# shellcheck shell=bash
# Sourced by the vmdr.k8s benches (run, ab, floor).
# start_sim BUILD_DIR N OUT_DIR TOKEN: starts vmdr-sim --generate N over HTTPS with a bearer
# token on a free loopback port and stops it when the script exits. Sets sim (its pid) and
# url, and writes OUT_DIR/kubeconfig and OUT_DIR/ca.crt (for curl). Fails, with the
# server's errors, when it exits or does not come up within 60 s.
start_sim() {
  local build=$1 n=$2 out=$3 token=$4 _
  "$build/bin/vmdr-sim" --generate "$n" --listen 127.0.0.1:0 --tls --token "$token" \
    --kubeconfig-out "$out/kubeconfig" --quiet >"$out/sim.out" 2>"$out/sim.err" &
  sim=$!
  trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    grep -q 'listening on' "$out/sim.out" 2>/dev/null && [ -s "$out/kubeconfig" ] && break
    kill -0 "$sim" 2>/dev/null || break # it exited: no use waiting
    sleep 0.1
  done
  # shellcheck disable=SC2034 # url is for the script that sources this
  url=$(grep -o 'https://[^ ]*' "$out/sim.out") ||
    { echo "vmdr-sim did not come up:" >&2; cat "$out/sim.err" >&2; return 1; }
  sed -n 's/.*certificate-authority-data: *//p' "$out/kubeconfig" | base64 -d >"$out/ca.crt"
}
