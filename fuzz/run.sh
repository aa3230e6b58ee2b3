#!/usr/bin/env bash
# Seed each fuzz target's corpus from the committed vectors and run it for a while.
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable).
# A crash leaves fuzz/artifacts/<target>/crash-*: copy it to fuzz/regressions/<target>/
# so the stable-Rust replay test (crates/phonetrust-proto/tests/fuzz_replay.rs) keeps it.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(trust_list capf_message capf_server_session tvs_message enc_config partial_config tftp_packet tftp_client tftp_server device_config tvs_server_session device_names)
vec=../crates/phonetrust-testsupport/vectors
for t in trust_list capf_message capf_server_session tvs_message enc_config partial_config tftp_packet tftp_client tftp_server device_config tvs_server_session device_names; do mkdir -p "corpus/$t"; done
cp "$vec"/files/*.tlv corpus/trust_list/ 2>/dev/null || true
cp "$vec"/files/encrypted/*.enc.sgn "$vec"/files/signed/*.sgn corpus/enc_config/ 2>/dev/null || true
cp "$vec"/files/*.cnf.xml corpus/partial_config/ 2>/dev/null || true
cp "$vec"/files/*.cnf.xml corpus/device_config/ 2>/dev/null || true
printf '\x00\x01SEP001122AABBCC.cnf.xml.sgn\x00octet\x00blksize\x001428\x00tsize\x000\x00' > corpus/tftp_packet/rrq
printf '\x00\x06blksize\x00512\x00tsize\x00600\x00' > corpus/tftp_packet/oack
printf '\x05\x00\x0e\x00\x06blksize\x00512\x00\x00\x06\x00\x03\x00\x01abcd' > corpus/tftp_client/short
n=0
while read -r who hex; do
  case "$who" in
    capfd|capfc) echo -n "$hex" | xxd -r -p > "corpus/capf_message/t$n" ;;
    tvsd|tvsc) echo -n "$hex" | xxd -r -p > "corpus/tvs_message/t$n"; { printf '\x40'; echo -n "$hex" | xxd -r -p; } > "corpus/tvs_server_session/t$n" ;;
  esac
  n=$((n+1))
done < <(cat "$vec"/transcripts/*.log | grep -v '^#' | grep -v '^$')
# capf_server_session: each transcript session's phone messages, 2-byte length prefixed,
# behind a selector byte (operation x authentication).
python3 - "$vec/transcripts/capf.log" <<'PY'
import sys
sessions = []
for line in open(sys.argv[1]):
    if line.startswith("##"):
        sessions.append([])
    elif line.startswith("capfc ") and sessions:
        sessions[-1].append(bytes.fromhex(line.split()[1]))
for i, msgs in enumerate(sessions):
    for sel in range(16):
        body = bytes([sel]) + b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
        open(f"corpus/capf_server_session/s{i}-{sel}", "wb").write(body)
PY
toolchain=+nightly
rustup toolchain list | grep -q nightly || { toolchain=""; export RUSTC_BOOTSTRAP=1; }
for t in "${targets[@]}"; do
  echo "== $t (${secs}s)"
  cargo $toolchain fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -malloc_limit_mb=256 -rss_limit_mb=1024
done
