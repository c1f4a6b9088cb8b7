"""Turning a trained run into models other tools load: a LoRA adapter merged into its
base (merge.py), and a model written as one GGUF file for llama.cpp (gguf_export.py)."""
