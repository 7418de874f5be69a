#!/usr/bin/env bash
# Latent recipe: spoken digits and commands, trained only on speech synthesised here, evaluated
# on the real FSDD recordings side by side with the cascade. About 25-45 min on 2 CPU cores.
#   bash recipes/latent_digits/run.sh
# Every stage resumes: synthesis keeps finished clips, training its latest checkpoint, the
# evaluation its journal.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=recipes/latent_digits
fsdd=../shared/data/fsdd-test/manifest.jsonl
journal=runs/latent_digits/eval.sqlite

# 1. Data: 20 texts x 8 voices (Piper + 7 espeak-ng) x 3 rates x 2 SNRs x 2 channels, the
#    token recipe's voices (it reads this set too; why not en-gb+f4: its run.sh).
./dev speechllm synth "$here/texts.jsonl" -o data/latent_digits \
  --voices piper,espeak:en-us,espeak:en-gb,espeak:en-gb-scotland,espeak:en-029,espeak:en-us+f3,espeak:en-us-nyc+m3,espeak:en-gb-x-rp+f2 \
  --rates 0.85,1.0,1.2 --snr clean,15 --effects clean,telephone

# 2. Train the adapter (encoder and LLM frozen).
./dev speechllm train "$here/config.json"

# 3. Evaluate on real FSDD recordings, latent and cascade on the same items.
echo '{"approach": "latent", "path": "runs/latent_digits/final"}' > runs/latent_digits/approach.json
echo '{"approach": "latent", "path": "runs/latent_digits/final", "engine": "llama.cpp"}' \
  > runs/latent_digits/approach-llama-cpp.json
./dev speechllm eval "$fsdd" --task digit --config runs/latent_digits/approach.json \
  --journal "$journal" --run latent-digits-torch-digit-clean
./dev speechllm eval "$fsdd" --task digit --config runs/latent_digits/approach-llama-cpp.json \
  --journal "$journal" --run latent-digits-llama.cpp-digit-clean
./dev speechllm eval "$fsdd" --task digit --asr whisper-base --journal "$journal"
./dev speechllm eval "$fsdd" --task digit --asr whisper-tiny.en --journal "$journal"
./dev speechllm report --journal "$journal" -o docs/latent_digits
cp runs/latent_digits/loss.png docs/latent_digits/loss.png
# 4. Speed of the two latent engines, measured in one run.
./dev setup && .venv/bin/python bench/latent_engines.py runs/latent_digits/final --items 10 --tokens 32
