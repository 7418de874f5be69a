"""Causal-LM plumbing shared by the latent and audio-token approaches: loading a Hugging Face
causal LM from an embedded GGUF or a folder (`causal`), keeping some of its layers, LoRA
(`lora`), packing rows of different lengths into one batch (`packing`) and bf16 autocast
(`precision`)."""
