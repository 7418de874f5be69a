"""`python -m speechllm.cli` (what torchrun and accelerate launch run)."""

from speechllm.cli import main

main()
