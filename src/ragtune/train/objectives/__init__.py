"""What a training run minimises: each module is one ``Objective`` (loop/trainer.py)
that batches its examples and computes its loss, supervised fine-tuning (sft.py) and
DPO preference alignment (dpo.py)."""
