#!/usr/bin/env bash
# A long fuzz run of the decoder and the counting rules (property tests in tests/it/fuzz.rs).
# Usage: scripts/fuzz.sh [cases]   (default 200000; cargo test runs a few hundred)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-200000}"
echo "fuzzing with PROPTEST_CASES=$PROPTEST_CASES (release build)"
cargo test --release --test it fuzz:: -- --nocapture
