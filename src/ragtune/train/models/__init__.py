"""The model being trained: which base model a spec names and its one-time conversion
from GGUF (base_model.py), and how it is loaded for training, LoRA and 4-bit QLoRA
included, with a loss that runs the output head on labelled positions only
(trainable.py)."""
