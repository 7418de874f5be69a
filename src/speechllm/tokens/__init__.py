"""Discrete audio tokens: k-means units, mel RVQ, and pretrained codecs (EnCodec, Mimi, DAC,
SNAC) behind `AudioTokenizer` / `AudioDetokenizer`."""
