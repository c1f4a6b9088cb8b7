"""Training from scratch: a tokenizer and a small Llama model on your own text."""
