"""The training loop any objective runs in (trainer.py), with what it leaves behind:
checkpoints that survive a crash (checkpoints.py), the progress bar (progress.py), and
the loss curve and closing summary (report.py)."""
