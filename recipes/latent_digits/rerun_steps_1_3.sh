#!/usr/bin/env bash
# The latent recipe's steps 1-3 (the rerun after the trainer moved, 2026-12-06): steps 1-3 of
# recipes/latent_digits/run.sh (the PyTorch evaluation only), timestamped.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=recipes/latent_digits
fsdd=../shared/data/fsdd-test/manifest.jsonl
journal=runs/latent_digits/eval.sqlite
date +"%T synth"
./dev speechllm synth "$here/texts.jsonl" -o data/latent_digits \
  --voices piper,espeak:en-us,espeak:en-gb,espeak:en-gb-scotland,espeak:en-029,espeak:en-us+f3,espeak:en-us-nyc+m3,espeak:en-gb-x-rp+f2 \
  --rates 0.85,1.0,1.2 --snr clean,15 --effects clean,telephone
date +"%T train"
./dev speechllm train "$here/config.json"
date +"%T eval"
echo '{"approach": "latent", "path": "runs/latent_digits/final"}' > runs/latent_digits/approach.json
./dev speechllm eval "$fsdd" --task digit --config runs/latent_digits/approach.json \
  --journal "$journal" --run latent-digits-torch-digit-clean
./dev speechllm report --journal "$journal" -o runs/latent_digits/report
date +"%T done"
