#!/usr/bin/env bash
# The published FSDD baseline (docs/baseline.md): Whisper base and tiny.en through the cascade,
# without and with N-best rescoring, clean and at 10 dB and 0 dB white-noise SNR; all 300 real
# FSDD test recordings, task asr. Every run is journaled, so re-running resumes.
#   bash bench/fsdd_baseline.sh            (~20-30 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=../shared/data/fsdd-test/manifest.jsonl
journal=docs/baseline/runs.sqlite
for asr in whisper-base whisper-tiny.en; do
  for post in none rescore; do
    for perturb in clean noise:snr=10 noise:snr=0; do
      extra=()
      [[ $perturb != clean ]] && extra=(--perturb "$perturb")
      ./dev speechllm eval "$manifest" --task asr --asr "$asr" --post "$post" \
        --journal "$journal" "${extra[@]}"
    done
  done
done
./dev speechllm report --journal "$journal" -o docs/baseline
