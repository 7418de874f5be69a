#!/usr/bin/env bash
# The spoken tool-call benchmark (docs/tools.md): speak the requests, then run the embedded
# cascade with constrained and free tool-call decoding, and with each ASR post-processing.
set -euo pipefail
cd "$(dirname "$0")/../.."
./dev python bench/tools_dataset.py
for setting in constrained free rescore; do
    ./dev speechllm eval data/tools/manifest.jsonl --task tools --config "recipes/tools/$setting.json" \
        --run "tools-$setting" --journal runs/tools.sqlite
done
# generative correction runs the chat LLM on every N-best list (~8 s an item here): test split
./dev speechllm eval data/tools/manifest-test.jsonl --task tools --config recipes/tools/correct.json \
    --run tools-correct-test --journal runs/tools.sqlite
./dev python bench/tools_table.py runs/tools.sqlite
