"""Latent-representation integration: speech encoder -> trainable adapter -> LLM embeddings."""
