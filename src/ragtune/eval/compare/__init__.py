"""``ragtune compare``: every route to the user's knowledge, on the same questions.

``budget`` the time budget and its split; ``measure`` cost meters and bootstrap
intervals; ``arms`` the routes (base, rag, lora, lora-aug, lora+rag, lora-aug+rag,
pretrain); ``augment`` lora-aug's restated facts; ``scale`` each arm at scale from
``ragtune estimate``; ``run`` one comparison, resumable; ``report`` report.md and
report.html from results.json.
"""
