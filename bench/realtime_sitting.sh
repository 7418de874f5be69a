#!/usr/bin/env bash
# One sitting of the realtime latency comparison (docs/realtime_latency.md): the stage floor
# with the file in hand, `speechllm chat`'s path with the file in hand, Pipecat 1.14 with its
# SpeechTimeout stop, and speechllm's realtime WebSocket, all on the same wavs, one after the
# other, through the peer harness in ../shared/peers (set it up as its README says).
# usage: WAVS="q/dev01.wav ..." OUT=results bash bench/realtime_sitting.sh [speechllm serve args]
# Env: PY (the peers' Python, with pipecat-ai), RUNS (2), PEERS (../shared/peers).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
PY=${PY:-$PEERS/.work/pcvenv/bin/python}
: "${WAVS:?space-separated 16 kHz wavs}"; OUT=$(realpath -m "${OUT:-results}"); RUNS=${RUNS:-2}
HOME_MODELS=${SPEECHLLM_HOME:-$HOME/.cache/speechllm}
GGUF=$HOME_MODELS/qwen2.5-0.5b-instruct-q4_k_m.gguf
WHISPER=$HOME_MODELS/whisper-base
read -r -a W <<< "$WAVS"
mkdir -p "$OUT"
cd "$PEERS"
echo "== floor (file in hand)"
"$PY" naive_cascade.py --mode floor --whisper-dir "$WHISPER" --gguf "$GGUF" --runs "$RUNS" \
    --json-out "$OUT/floor.json" "${W[@]}" > "$OUT/floor.out" 2> "$OUT/floor.err"
echo "== speechllm chat path (file in hand)"
"$ROOT/.venv/bin/python" "$ROOT/bench/file_in_hand.py" --runs "$RUNS" "${W[@]}" \
    > "$OUT/file_in_hand.out" 2>&1
echo "== pipecat (speech-timeout)"
"$PY" -m llama_cpp.server --model "$GGUF" --model_alias qwen2.5-coder-0.5b-instruct \
    --n_threads 2 --n_threads_batch 2 --n_ctx 2048 --n_batch 512 --logits_all false \
    --host 127.0.0.1 --port 8081 > "$OUT/llama_server.log" 2>&1 &
LPID=$!; trap 'kill "$LPID" 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf http://127.0.0.1:8081/v1/models > /dev/null && break; sleep 1; done
"$PY" pipecat_cascade.py --whisper-dir "$WHISPER" --llm-url http://127.0.0.1:8081/v1 \
    --llm-server-pid "$LPID" --turn-stop speech-timeout --runs "$RUNS" \
    --json-out "$OUT/pipecat_speech-timeout.json" "${W[@]}" > "$OUT/pipecat.out" 2> "$OUT/pipecat.err"
kill "$LPID"; wait "$LPID" 2>/dev/null || true; trap - EXIT
echo "== speechllm realtime ($*)"
"$ROOT/.venv/bin/speechllm" serve --port 8090 "$@" > "$OUT/serve.log" 2>&1 &
SPID=$!; trap 'kill "$SPID" 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:8090/health > /dev/null && break; sleep 1; done
"$ROOT/.venv/bin/python" speechllm_realtime.py --url ws://127.0.0.1:8090/v1/realtime \
    --server-pid "$SPID" --runs "$RUNS" --json-out "$OUT/speechllm_realtime.json" "${W[@]}" \
    > "$OUT/speechllm_realtime.out" 2>&1
kill "$SPID"; wait "$SPID" 2>/dev/null || true; trap - EXIT
tail -n 1 "$OUT/file_in_hand.out"
echo "results in $OUT (JSON per harness)"
