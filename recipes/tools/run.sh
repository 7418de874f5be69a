#!/usr/bin/env bash
# The spoken tool-call benchmark (docs/tools.md): speak the requests, then run the embedded
# cascade with constrained and free tool-call decoding, and with each ASR post-processing.
set -euo pipefail
cd "$(dirname "$0")/../.."
./dev python bench/tools_dataset.py
for setting in constrained free rescore correct; do
    ./dev speechllm eval data/tools/manifest.jsonl --task tools --config "recipes/tools/$setting.json" \
        --run "tools-$setting" --journal runs/tools.sqlite
done
./dev python bench/tools_table.py runs/tools.sqlite
