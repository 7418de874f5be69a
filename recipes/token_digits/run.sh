#!/usr/bin/env bash
# Token recipe: the latent recipe's synthetic digits and commands, read as k-means units by a
# grown-vocabulary Gemma 3 270M (new token rows + LoRA), evaluated on the real FSDD recordings.
#   bash recipes/token_digits/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
fsdd=../shared/data/fsdd-test/manifest.jsonl
journal=runs/token_digits/eval.sqlite

# 1. Data: the same synthetic set as the latent recipe (resumes; skips finished clips).
./dev speechllm synth recipes/latent_digits/texts.jsonl -o data/latent_digits \
  --voices piper,espeak:en-us,espeak:en-gb,espeak:en-gb-scotland,espeak:en-029,espeak:en-us+f3,espeak:en-gb+f4,espeak:en-us-nyc+m3,espeak:en-gb-x-rp+f2 \
  --rates 0.85,1.0,1.2 --snr clean,15 --effects clean,telephone

# 2. Units: k-means (k=200) over Whisper base encoder states of that set.
[ -f runs/token_digits/units/units.npz ] || ./dev speechllm tokens fit \
  data/latent_digits/manifest.jsonl --kind units -k 200 --window 4 -o runs/token_digits/units

# 3. Train the token model with the latent trainer.
./dev speechllm train latent recipes/token_digits/config.json

# 4. Evaluate on FSDD.
echo '{"approach": "tokens", "path": "runs/token_digits/final"}' > runs/token_digits/approach.json
./dev speechllm eval "$fsdd" --task digit --config runs/token_digits/approach.json \
  --journal "$journal" --run token-digits-digit-clean
./dev speechllm report --journal "$journal" -o docs/token_digits
