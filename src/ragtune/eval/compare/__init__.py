"""``ragtune compare``: every route to the user's knowledge, on the same questions.

``budget`` the time budget and its split; ``measure`` cost meters and bootstrap
intervals; ``arms`` the routes (base, rag, lora, lora+rag, pretrain); ``run`` one
comparison, resumable; ``report`` report.md and report.html from results.json.
"""
